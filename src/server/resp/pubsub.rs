//! Pub/sub at this node: `SUBSCRIBE`/`UNSUBSCRIBE`, `PSUBSCRIBE`/`PUNSUBSCRIBE`, `PUBLISH`, and
//! `PUBSUB CHANNELS|NUMSUB|NUMPAT`, with RESP2's subscribed mode and RESP3's push frames.
//!
//! A `PUBLISH` is delivered to this node's subscribers and handed to the node's links, which
//! carry it to every other node of the tree (see the README's "Pub/sub across the tree"); a
//! message that arrives on a link is delivered here by [`Shared::deliver`].

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;

use super::Shared;
use super::args::Args;
use super::session::Session;
use crate::server::glob;
use crate::server::protocol::Reply;

/// Who listens to what at this node.
#[derive(Default)]
pub(crate) struct PubSub {
    channels: Mutex<HashMap<Bytes, Vec<u64>>>,
    patterns: Mutex<Vec<(Bytes, u64)>>,
}

impl PubSub {
    /// Channels with at least one subscriber.
    pub fn channels(&self) -> usize {
        self.channels.lock().len()
    }

    /// Pattern subscriptions, over every client.
    pub fn patterns(&self) -> usize {
        self.patterns.lock().len()
    }

    pub fn is_subscribed(&self, client: u64, channel: &[u8]) -> bool {
        self.channels
            .lock()
            .get(channel)
            .is_some_and(|ids| ids.contains(&client))
    }

    fn add_channel(&self, client: u64, channel: &Bytes) {
        let mut all = self.channels.lock();
        let ids = all.entry(channel.clone()).or_default();
        if !ids.contains(&client) {
            ids.push(client);
        }
    }

    pub(super) fn remove_channel(&self, client: u64, channel: &[u8]) {
        let mut all = self.channels.lock();
        if let Some(ids) = all.get_mut(channel) {
            ids.retain(|&id| id != client);
            if ids.is_empty() {
                all.remove(channel);
            }
        }
    }

    fn add_pattern(&self, client: u64, pattern: &Bytes) {
        let mut all = self.patterns.lock();
        if !all.iter().any(|(p, id)| *id == client && p == pattern) {
            all.push((pattern.clone(), client));
        }
    }

    pub(super) fn remove_pattern(&self, client: u64, pattern: &[u8]) {
        self.patterns
            .lock()
            .retain(|(p, id)| !(*id == client && p == pattern));
    }
}

impl Shared {
    /// Delivers a message published on `channel` to this node's subscribers; returns how many
    /// received it.
    pub(crate) fn deliver(&self, channel: &[u8], message: &[u8]) -> usize {
        let mut receivers = 0;
        let direct: Vec<u64> = self
            .pubsub
            .channels
            .lock()
            .get(channel)
            .cloned()
            .unwrap_or_default();
        for id in direct {
            if let Some(c) = self.clients.get(id) {
                let mut buf = BytesMut::with_capacity(32 + channel.len() + message.len());
                let mut r = Reply::new(&mut buf, c.resp3());
                r.push(3);
                r.bulk(b"message");
                r.bulk(channel);
                r.bulk(message);
                c.push(buf.freeze());
                receivers += 1;
            }
        }
        let matching: Vec<(Bytes, u64)> = self
            .pubsub
            .patterns
            .lock()
            .iter()
            .filter(|(p, _)| glob::matches(p, channel))
            .cloned()
            .collect();
        for (pattern, id) in matching {
            if let Some(c) = self.clients.get(id) {
                let mut buf = BytesMut::new();
                let mut r = Reply::new(&mut buf, c.resp3());
                r.push(4);
                r.bulk(b"pmessage");
                r.bulk(&pattern);
                r.bulk(channel);
                r.bulk(message);
                c.push(buf.freeze());
                receivers += 1;
            }
        }
        receivers
    }
}

/// A subscription confirmation: `[kind, name, count]`, a push frame in RESP3.
fn confirm(out: &mut Reply<'_>, kind: &[u8], name: Option<&[u8]>, count: usize) {
    out.push(3);
    out.bulk(kind);
    out.bulk_or_null(name);
    out.int(count as i64);
}

fn count(s: &Session<'_>) -> usize {
    s.channels.len() + s.patterns.len()
}

pub(super) fn subscribe(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    join(s, args, out, false);
}

pub(super) fn psubscribe(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    join(s, args, out, true);
}

/// `SUBSCRIBE` (channels) or `PSUBSCRIBE` (`patterns`): one confirmation per name.
fn join(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>, patterns: bool) {
    let kind: &[u8] = if patterns {
        b"psubscribe"
    } else {
        b"subscribe"
    };
    for name in args.from(1) {
        let held = if patterns { &s.patterns } else { &s.channels };
        if !held.iter().any(|h| h == name) {
            let name = Bytes::copy_from_slice(name);
            if patterns {
                s.shared.pubsub.add_pattern(s.client.id, &name);
                s.patterns.push(name);
            } else {
                s.shared.pubsub.add_channel(s.client.id, &name);
                s.channels.push(name);
            }
        }
        s.count_subscriptions();
        confirm(out, kind, Some(name), count(s));
    }
}

pub(super) fn unsubscribe(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    leave(s, args, out, false);
}

pub(super) fn punsubscribe(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    leave(s, args, out, true);
}

/// `UNSUBSCRIBE` (channels) or `PUNSUBSCRIBE` (`patterns`): the names given, or all; one
/// confirmation each, or one with a null name when there were none.
fn leave(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>, patterns: bool) {
    let kind: &[u8] = if patterns {
        b"punsubscribe"
    } else {
        b"unsubscribe"
    };
    let names: Vec<Bytes> = match (args.len(), patterns) {
        (1, false) => s.channels.clone(),
        (1, true) => s.patterns.clone(),
        _ => args.from(1).map(Bytes::copy_from_slice).collect(),
    };
    if names.is_empty() {
        confirm(out, kind, None, count(s));
        return;
    }
    for name in names {
        if patterns {
            s.shared.pubsub.remove_pattern(s.client.id, &name);
            s.patterns.retain(|p| *p != name);
        } else {
            s.shared.pubsub.remove_channel(s.client.id, &name);
            s.channels.retain(|c| *c != name);
        }
        s.count_subscriptions();
        confirm(out, kind, Some(&name), count(s));
    }
}

/// `PUBLISH channel message`: delivered here and sent on every link; answers how many
/// subscribers of this node received it (those of other nodes are not counted: delivery there
/// is asynchronous).
pub(super) fn publish(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let (channel, message) = (args.get(1), args.get(2));
    let receivers = s.shared.deliver(channel, message);
    s.node.publish(
        Bytes::copy_from_slice(channel),
        Bytes::copy_from_slice(message),
    );
    out.int(receivers as i64);
}

/// `PUBSUB CHANNELS [pattern]|NUMSUB [channel...]|NUMPAT|SHARDCHANNELS|SHARDNUMSUB|HELP`.
pub(super) fn introspect(s: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    let pubsub = &s.shared.pubsub;
    match args.upper(1).as_bytes() {
        b"CHANNELS" | b"SHARDCHANNELS" if args.len() <= 3 => {
            let shard = args.upper(1).as_bytes() == b"SHARDCHANNELS";
            let mut names: Vec<Bytes> = if shard {
                Vec::new()
            } else {
                pubsub.channels.lock().keys().cloned().collect()
            };
            if args.len() == 3 {
                names.retain(|n| glob::matches(args.get(2), n));
            }
            names.sort_unstable();
            out.array(names.len());
            for n in &names {
                out.bulk(n);
            }
        }
        b"NUMSUB" | b"SHARDNUMSUB" => {
            let shard = args.upper(1).as_bytes() == b"SHARDNUMSUB";
            out.array(2 * (args.len() - 2));
            for channel in args.from(2) {
                let n = if shard {
                    0
                } else {
                    pubsub.channels.lock().get(channel).map_or(0, Vec::len)
                };
                out.bulk(channel);
                out.int(n as i64);
            }
        }
        b"NUMPAT" if args.len() == 2 => out.int(pubsub.patterns() as i64),
        b"HELP" => {
            let lines = [
                "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CHANNELS [<pattern>]",
                "    Return the currently active channels matching a <pattern> (default: '*').",
                "NUMPAT",
                "    Return number of subscriptions to patterns.",
                "NUMSUB [<channel> ...]",
                "    Return the number of subscribers for the specified channels, excluding",
                "    pattern subscriptions(default: no channels).",
                "HELP",
                "    Print this help.",
            ];
            super::args::help(out, &lines);
        }
        _ => out.error(&format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try PUBSUB HELP.",
            String::from_utf8_lossy(args.get(1))
        )),
    }
}
