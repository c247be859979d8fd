//! `CLIENT`: the connection's own id, name and library, the list of connections and killing
//! them, and client-side caching's `TRACKING`, `CACHING`, `GETREDIR` and `TRACKINGINFO` (over the
//! tracking registry, src/server/resp/tracking.rs).

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::args::{
    Args, BAD_NAME, SYNTAX, help, int_arg, on_off, parse_int, unknown_subcommand, valid_name,
};
use super::session::{Session, TrackingMode};
use crate::server::protocol::Reply;

/// `CLIENT ...`.
pub(super) fn client(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let sub = args.upper(1);
    let n = args.len();
    match sub.as_bytes() {
        b"ID" if n == 2 => out.int(s.client.id as i64),
        b"GETNAME" if n == 2 => {
            let name = s.client.names.lock().name.clone();
            out.bulk_or_null(name.as_deref());
        }
        b"SETNAME" if n == 3 => {
            let name = args.get(2);
            if !valid_name(name) {
                out.error(BAD_NAME);
                return;
            }
            s.client.names.lock().name = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
            out.ok();
        }
        b"SETINFO" if n == 4 => {
            let value = args.get(3);
            if !valid_name(value) {
                out.error("ERR lib-name or lib-ver cannot contain spaces, newlines or special characters.");
                return;
            }
            let value = (!value.is_empty()).then(|| Bytes::copy_from_slice(value));
            let mut names = s.client.names.lock();
            match args.upper(2).as_bytes() {
                b"LIB-NAME" => names.lib_name = value,
                b"LIB-VER" => names.lib_ver = value,
                _ => {
                    drop(names);
                    out.error(&format!(
                        "ERR Unrecognized option '{}'",
                        String::from_utf8_lossy(args.get(2))
                    ));
                    return;
                }
            }
            out.ok();
        }
        b"INFO" if n == 2 => {
            let mut line = s.client.describe(s.shared.names);
            line.push('\n');
            out.verbatim(line.as_bytes());
        }
        b"LIST" => client_list(s, args, out),
        b"KILL" if n >= 3 => client_kill(s, args, out),
        b"NO-EVICT" | b"NO-TOUCH" if n == 3 => {
            let Some(on) = on_off(args.get(2), out) else {
                return;
            };
            let flag = if sub.as_bytes() == b"NO-EVICT" {
                &s.client.no_evict
            } else {
                &s.client.no_touch
            };
            flag.store(on, Ordering::Relaxed);
            out.ok();
        }
        b"TRACKING" if n >= 3 => client_tracking(s, args, out),
        b"CACHING" if n == 3 => client_caching(s, args, out),
        b"GETREDIR" if n == 2 => client_getredir(s, out),
        b"TRACKINGINFO" if n == 2 => client_trackinginfo(s, out),
        b"HELP" => {
            let lines = [
                "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CACHING (YES|NO)",
                "GETNAME",
                "GETREDIR",
                "ID",
                "INFO",
                "KILL <ip:port> | KILL <option> <value> [<option> <value> [...]]",
                "LIST [TYPE (NORMAL|PUBSUB)] [ID <id> [<id> ...]]",
                "NO-EVICT (ON|OFF)",
                "NO-TOUCH (ON|OFF)",
                "SETINFO <LIB-NAME|LIB-VER> <value>",
                "SETNAME <name>",
                "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]] [OPTIN] [OPTOUT] [NOLOOP]",
                "TRACKINGINFO",
                "HELP",
            ];
            help(out, &lines);
        }
        _ => unknown_subcommand(args, "CLIENT", out),
    }
}

/// `CLIENT LIST [TYPE normal|pubsub|master|replica] [ID id...]`.
fn client_list(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let mut clients = s.shared.clients.list();
    let mut i = 2;
    while i < args.len() {
        match args.upper(i).as_bytes() {
            b"TYPE" if i + 1 < args.len() => {
                let pubsub = |c: &super::clients::Client| {
                    c.channels.load(Ordering::Relaxed) + c.patterns.load(Ordering::Relaxed) > 0
                };
                match args.upper(i + 1).as_bytes() {
                    b"NORMAL" => clients.retain(|c| !pubsub(c)),
                    b"PUBSUB" => clients.retain(|c| pubsub(c)),
                    b"MASTER" | b"REPLICA" | b"SLAVE" => clients.clear(),
                    _ => {
                        out.error(&format!(
                            "ERR Unknown client type '{}'",
                            String::from_utf8_lossy(args.get(i + 1))
                        ));
                        return;
                    }
                }
                i += 2;
            }
            b"ID" if i + 1 < args.len() => {
                let mut ids = Vec::new();
                for raw in args.from(i + 1) {
                    match parse_int(raw) {
                        Some(id) if id > 0 => ids.push(id as u64),
                        _ => {
                            out.error("ERR Invalid client ID");
                            return;
                        }
                    }
                }
                clients.retain(|c| ids.contains(&c.id));
                i = args.len();
            }
            _ => {
                out.error(SYNTAX);
                return;
            }
        }
    }
    let mut text = String::new();
    for c in clients {
        text.push_str(&c.describe(s.shared.names));
        text.push('\n');
    }
    out.verbatim(text.as_bytes());
}

/// `CLIENT KILL addr` (answers OK or an error) or `CLIENT KILL filter value...` with filters
/// `ID`, `ADDR`, `LADDR`, `TYPE`, `USER`, `SKIPME` (answers how many were killed).
fn client_kill(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    if args.len() == 3 {
        let addr = String::from_utf8_lossy(args.get(2)).into_owned();
        let target = s.shared.clients.list().into_iter().find(|c| c.addr == addr);
        match target {
            Some(c) => {
                kill(s, &c);
                out.ok();
            }
            None => out.error("ERR No such client"),
        }
        return;
    }
    if !args.len().is_multiple_of(2) {
        out.error(SYNTAX);
        return;
    }
    let mut clients = s.shared.clients.list();
    let mut skip_me = true;
    for i in (2..args.len()).step_by(2) {
        let value = args.get(i + 1);
        let text = String::from_utf8_lossy(value).into_owned();
        match args.upper(i).as_bytes() {
            b"ID" => {
                let Some(id) = int_arg(value, out) else {
                    return;
                };
                clients.retain(|c| c.id as i64 == id);
            }
            b"ADDR" => clients.retain(|c| c.addr == text),
            b"LADDR" => clients.retain(|c| c.laddr == text),
            b"USER" => clients.retain(|_| text == "default"),
            b"TYPE" => match args.upper(i + 1).as_bytes() {
                b"NORMAL" | b"PUBSUB" => {
                    let want_pubsub = args.upper(i + 1).as_bytes() == b"PUBSUB";
                    clients.retain(|c| {
                        (c.channels.load(Ordering::Relaxed) + c.patterns.load(Ordering::Relaxed)
                            > 0)
                            == want_pubsub
                    });
                }
                b"MASTER" | b"REPLICA" | b"SLAVE" => clients.clear(),
                _ => {
                    out.error(&format!("ERR Unknown client type '{text}'"));
                    return;
                }
            },
            b"SKIPME" => match args.upper(i + 1).as_bytes() {
                b"YES" => skip_me = true,
                b"NO" => skip_me = false,
                _ => {
                    out.error(SYNTAX);
                    return;
                }
            },
            b"MAXAGE" => {
                let Some(age) = int_arg(value, out) else {
                    return;
                };
                clients.retain(|c| c.created.elapsed().as_secs() as i64 >= age);
            }
            _ => {
                out.error(SYNTAX);
                return;
            }
        }
    }
    if skip_me {
        clients.retain(|c| c.id != s.client.id);
    }
    for c in &clients {
        kill(s, c);
    }
    out.int(clients.len() as i64);
}

/// Closes another client's connection (or, once this reply is written, this one).
fn kill(s: &mut Session<'_>, c: &super::clients::Client) {
    if c.id == s.client.id {
        s.close = true;
    } else {
        c.killed.cancel();
    }
}

/// `CLIENT TRACKING on|off [REDIRECT id] [PREFIX p]... [BCAST] [OPTIN] [OPTOUT] [NOLOOP]`.
fn client_tracking(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let Some(on) = super::args::on_off(args.get(2), out) else {
        return;
    };
    let mut mode = TrackingMode::default();
    let mut i = 3;
    while i < args.len() {
        match args.upper(i).as_bytes() {
            b"BCAST" => mode.bcast = true,
            b"OPTIN" => mode.optin = true,
            b"OPTOUT" => mode.optout = true,
            b"NOLOOP" => mode.noloop = true,
            b"REDIRECT" if i + 1 < args.len() => {
                let Some(id) = int_arg(args.get(i + 1), out) else {
                    return;
                };
                if id != s.client.id as i64 && s.shared.clients.get(id as u64).is_none() {
                    out.error("ERR The client ID you want redirect to does not exist");
                    return;
                }
                mode.redirect = (id != s.client.id as i64).then_some(id as u64);
                i += 1;
            }
            b"PREFIX" if i + 1 < args.len() => {
                mode.prefixes.push(Bytes::copy_from_slice(args.get(i + 1)));
                i += 1;
            }
            _ => {
                out.error(SYNTAX);
                return;
            }
        }
        i += 1;
    }
    if !on {
        s.stop_tracking();
        out.ok();
        return;
    }
    if !mode.bcast && !mode.prefixes.is_empty() {
        out.error("ERR PREFIX option requires BCAST mode to be enabled");
        return;
    }
    if mode.optin && mode.optout {
        out.error("ERR You can't specify both OPTIN mode and OPTOUT mode");
        return;
    }
    if mode.bcast && (mode.optin || mode.optout) {
        out.error("ERR OPTIN and OPTOUT are not compatible with BCAST");
        return;
    }
    for (i, a) in mode.prefixes.iter().enumerate() {
        for b in &mode.prefixes[i + 1..] {
            if a.starts_with(b) || b.starts_with(a) {
                out.error(&format!(
                    "ERR Prefix '{}' overlaps with another provided prefix '{}'. Prefixes for a single client must not overlap.",
                    String::from_utf8_lossy(a),
                    String::from_utf8_lossy(b)
                ));
                return;
            }
        }
    }
    if let Some(current) = &s.tracking
        && current.bcast != mode.bcast
    {
        out.error("ERR You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode.");
        return;
    }
    s.client.tracking.store(true, Ordering::Relaxed);
    s.client
        .redirect
        .store(mode.redirect.map_or(0, |r| r as i64), Ordering::Relaxed);
    s.shared.tracking.start(s.client.id, mode.clone());
    s.tracking = Some(mode);
    out.ok();
}

/// `CLIENT CACHING yes|no`: whether the next command's reads are tracked, in `OPTIN` / `OPTOUT`
/// mode.
fn client_caching(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let Some(mode) = &s.tracking.as_ref().filter(|m| m.optin || m.optout) else {
        out.error("ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled");
        return;
    };
    match args.upper(2).as_bytes() {
        b"YES" if mode.optin => s.caching_next = Some(true),
        b"YES" => {
            out.error(
                "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.",
            );
            return;
        }
        b"NO" if mode.optout => s.caching_next = Some(false),
        b"NO" => {
            out.error(
                "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
            );
            return;
        }
        _ => {
            out.error(SYNTAX);
            return;
        }
    }
    s.caching_kept = true;
    out.ok();
}

/// `CLIENT GETREDIR`: -1 without tracking, 0 tracking without redirect, else the redirect id.
fn client_getredir(s: &mut Session<'_>, out: &mut Reply<'_>) {
    out.int(match &s.tracking {
        None => -1,
        Some(mode) => mode.redirect.map_or(0, |r| r as i64),
    });
}

/// `CLIENT TRACKINGINFO`: flags, redirect and prefixes, as a map.
fn client_trackinginfo(s: &mut Session<'_>, out: &mut Reply<'_>) {
    let mut flags: Vec<&str> = Vec::new();
    let (redirect, prefixes) = match &s.tracking {
        None => {
            flags.push("off");
            (-1, Vec::new())
        }
        Some(mode) => {
            flags.push("on");
            for (set, name) in [
                (mode.bcast, "bcast"),
                (mode.optin, "optin"),
                (mode.optout, "optout"),
                (mode.noloop, "noloop"),
                (s.caching_next == Some(true), "caching-yes"),
                (s.caching_next == Some(false), "caching-no"),
            ] {
                if set {
                    flags.push(name);
                }
            }
            let redirect = match mode.redirect {
                Some(r) if s.shared.clients.get(r).is_none() => {
                    flags.push("broken_redirect");
                    r as i64
                }
                Some(r) => r as i64,
                None => 0,
            };
            (redirect, mode.prefixes.clone())
        }
    };
    out.map(3);
    out.bulk(b"flags");
    out.set(flags.len());
    for f in flags {
        out.bulk(f.as_bytes());
    }
    out.bulk(b"redirect");
    out.int(redirect);
    out.bulk(b"prefixes");
    out.array(prefixes.len());
    for p in &prefixes {
        out.bulk(p);
    }
}
