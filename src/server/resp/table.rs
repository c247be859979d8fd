//! The command table — a table of data, one row per command: every command the RESP door runs,
//! with its arity, flags, key positions, group, handler and summary. What dispatch checks before
//! running a command, what `MULTI` queues, and what `COMMAND` (`COUNT`, `INFO`, `DOCS`, `LIST`,
//! `GETKEYS`; answered here, from the table) publishes for clients and `redis-cli`.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::args::{Args, SYNTAX, help, unknown_subcommand};
use super::session::Session;
use super::{admin, client, cluster, connection, hashes, keys, pubsub, strings, transactions};
use crate::server::glob;
use crate::server::protocol::Reply;

/// Runs one command; its arity was checked.
pub(super) type Handler = fn(&mut Session<'_>, Args<'_>, &mut Reply<'_>);

/// Reads the keyspace: runs under the node's gate, shared.
pub(super) const READ: u32 = 1;
/// Writes the keyspace: runs under the node's gate, shared.
pub(super) const WRITE: u32 = 1 << 1;
/// Runs under the node's gate alone, so that no other command sees it half done (`EXEC`, and
/// the writes of several keys).
pub(super) const ALONE: u32 = 1 << 2;
/// Allowed before `AUTH`.
pub(super) const NO_AUTH: u32 = 1 << 3;
/// Allowed on a RESP2 connection that is subscribed.
pub(super) const SUBSCRIBED: u32 = 1 << 4;
/// Not queued by `MULTI`: runs at once (`EXEC`, `DISCARD`, `MULTI`, `WATCH`, `QUIT`, `RESET`).
pub(super) const NOT_QUEUED: u32 = 1 << 5;
/// Answers in constant time.
pub(super) const FAST: u32 = 1 << 6;
/// Administrative.
pub(super) const ADMIN: u32 = 1 << 7;
/// A pub/sub command.
pub(super) const PUBSUB: u32 = 1 << 8;
/// Refused where memory is short, in Redis (every write that can grow the dataset).
pub(super) const DENY_OOM: u32 = 1 << 9;

/// One command.
pub(super) struct Spec {
    /// Lower case, as `COMMAND` lists it.
    pub name: &'static str,
    /// Redis's convention: `n` exactly n arguments including the name, `-n` at least n.
    pub arity: i32,
    pub flags: u32,
    /// First key, last key (-1: the last argument), step; 0s for none.
    pub keys: (i32, i32, i32),
    pub group: &'static str,
    pub summary: &'static str,
    pub run: Handler,
}

impl Spec {
    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    /// Whether `n` arguments (the name included) fit the arity.
    pub fn arity_ok(&self, n: usize) -> bool {
        let n = n as i64;
        let a = i64::from(self.arity);
        if a >= 0 { n == a } else { n >= -a }
    }

    /// The positions of the keys in a request of `n` arguments (the name included), as the
    /// table's key spec says: dispatch's type and slot checks and `COMMAND GETKEYS` read them.
    pub fn key_positions(&self, n: usize) -> impl Iterator<Item = usize> + use<> {
        let (first, last, step) = self.keys;
        let last = if last < 0 { n as i32 + last } else { last };
        let end = if first <= 0 {
            0
        } else {
            last.min(n as i32 - 1)
        };
        (first.max(1)..=end)
            .step_by(step.max(1) as usize)
            .map(|i| i as usize)
    }

    /// The flag names `COMMAND INFO` lists.
    pub fn flag_names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        for (flag, name) in [
            (WRITE, "write"),
            (READ, "readonly"),
            (DENY_OOM, "denyoom"),
            (ADMIN, "admin"),
            (PUBSUB, "pubsub"),
            (NO_AUTH, "no_auth"),
            (FAST, "fast"),
        ] {
            if self.has(flag) {
                names.push(name);
            }
        }
        if self.has(NOT_QUEUED) || self.group == "connection" {
            names.extend(["noscript", "loading", "stale"]);
        }
        names
    }

    /// The ACL categories `COMMAND INFO` lists.
    pub fn categories(&self) -> Vec<String> {
        let mut cats = vec![format!("@{}", self.group.replace("generic", "keyspace"))];
        if self.has(WRITE) {
            cats.push("@write".into());
        }
        if self.has(READ) {
            cats.push("@read".into());
        }
        if self.has(FAST) {
            cats.push("@fast".into());
        } else {
            cats.push("@slow".into());
        }
        if self.has(ADMIN) {
            cats.push("@admin".into());
            cats.push("@dangerous".into());
        }
        cats
    }
}

const NONE: (i32, i32, i32) = (0, 0, 0);
const ONE: (i32, i32, i32) = (1, 1, 1);
const ALL: (i32, i32, i32) = (1, -1, 1);
const TWO: (i32, i32, i32) = (1, 2, 1);

/// One row of the table.
const fn row(
    name: &'static str,
    arity: i32,
    flags: u32,
    keys: (i32, i32, i32),
    group: &'static str,
    run: Handler,
    summary: &'static str,
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        keys,
        group,
        summary,
        run,
    }
}

/// Every command, in no particular order: name, arity, flags, keys, group, handler, summary.
#[rustfmt::skip]
pub(super) static COMMANDS: &[Spec] = &[
    // Connection.
    row("auth",         -2, NO_AUTH | FAST | NOT_QUEUED,              NONE,       "connection",   connection::auth,      "Authenticates the connection."),
    row("hello",        -1, NO_AUTH | FAST | NOT_QUEUED,              NONE,       "connection",   connection::hello,     "Handshakes with the server: picks RESP2 or RESP3, authenticates, names the connection."),
    row("ping",         -1, FAST | SUBSCRIBED,                        NONE,       "connection",   connection::ping,      "Returns the server's liveliness response."),
    row("echo",         2,  FAST,                                     NONE,       "connection",   connection::echo,      "Returns the given string."),
    row("quit",         -1, NO_AUTH | FAST | SUBSCRIBED | NOT_QUEUED, NONE,       "connection",   connection::quit,      "Closes the connection."),
    row("reset",        1,  NO_AUTH | FAST | SUBSCRIBED | NOT_QUEUED, NONE,       "connection",   connection::reset,     "Resets the connection."),
    row("select",       2,  FAST,                                     NONE,       "connection",   connection::select,    "Changes the selected database (a named cache)."),
    row("client",       -2, 0,                                        NONE,       "connection",   client::client,         "A container for client connection commands."),
    // Transactions.
    row("multi",        1,  FAST | NOT_QUEUED,                        NONE,       "transactions", transactions::multi,   "Starts a transaction."),
    row("exec",         1,  ALONE | NOT_QUEUED,                       NONE,       "transactions", transactions::exec,    "Executes all commands in a transaction."),
    row("discard",      1,  FAST | NOT_QUEUED,                        NONE,       "transactions", transactions::discard, "Discards a transaction."),
    row("watch",        -2, READ | FAST | NOT_QUEUED,                 ALL,        "transactions", transactions::watch,   "Monitors changes to keys to determine the execution of a transaction."),
    row("unwatch",      1,  FAST,                                     NONE,       "transactions", transactions::unwatch, "Forgets about watched keys of a transaction."),
    // Strings.
    row("get",          2,  READ | FAST,                              ONE,        "string",       strings::get,          "Returns the string value of a key."),
    row("set",          -3, WRITE | DENY_OOM,                         ONE,        "string",       strings::set,          "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist."),
    row("getdel",       2,  WRITE | FAST,                             ONE,        "string",       strings::getdel,       "Returns the string value of a key after deleting the key."),
    row("getex",        -2, WRITE | FAST,                             ONE,        "string",       strings::getex,        "Returns the string value of a key after setting its expiration time."),
    row("getset",       3,  WRITE | DENY_OOM | FAST,                  ONE,        "string",       strings::getset,       "Returns the previous string value of a key after setting it to a new value."),
    row("setex",        4,  WRITE | DENY_OOM,                         ONE,        "string",       strings::setex,        "Sets the string value and expiration time of a key."),
    row("psetex",       4,  WRITE | DENY_OOM,                         ONE,        "string",       strings::psetex,       "Sets both string value and expiration time in milliseconds of a key."),
    row("setnx",        3,  WRITE | DENY_OOM | FAST,                  ONE,        "string",       strings::setnx,        "Sets the string value of a key only when the key doesn't exist."),
    row("mset",         -3, WRITE | DENY_OOM | ALONE,                 (1, -1, 2), "string",       strings::mset,         "Atomically creates or modifies the string values of one or more keys."),
    row("msetnx",       -3, WRITE | DENY_OOM | ALONE,                 (1, -1, 2), "string",       strings::msetnx,       "Atomically modifies the string values of one or more keys only when all keys don't exist."),
    row("mget",         -2, READ | FAST,                              ALL,        "string",       strings::mget,         "Atomically returns the string values of one or more keys."),
    row("append",       3,  WRITE | DENY_OOM | FAST,                  ONE,        "string",       strings::append,       "Appends a string to the value of a key. Creates the key if it doesn't exist."),
    row("getrange",     4,  READ,                                     ONE,        "string",       strings::getrange,     "Returns a substring of the string stored at a key."),
    row("substr",       4,  READ,                                     ONE,        "string",       strings::getrange,     "Returns a substring from a string value."),
    row("setrange",     4,  WRITE | DENY_OOM,                         ONE,        "string",       strings::setrange,     "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist."),
    row("strlen",       2,  READ | FAST,                              ONE,        "string",       strings::strlen,       "Returns the length of a string value."),
    row("lcs",          -3, READ,                                     TWO,        "string",       strings::lcs,          "Finds the longest common substring."),
    row("incr",         2,  WRITE | DENY_OOM | FAST,                  ONE,        "string",       strings::incr,         "Increments the integer value of a key by one; increments on every node add up."),
    row("decr",         2,  WRITE | DENY_OOM | FAST,                  ONE,        "string",       strings::decr,         "Decrements the integer value of a key by one."),
    row("incrby",       3,  WRITE | DENY_OOM | FAST,                  ONE,        "string",       strings::incrby,       "Increments the integer value of a key by a number."),
    row("decrby",       3,  WRITE | DENY_OOM | FAST,                  ONE,        "string",       strings::decrby,       "Decrements a number from the integer value of a key."),
    row("incrbyfloat",  3,  WRITE | DENY_OOM | FAST,                  ONE,        "string",       strings::incrbyfloat,  "Increment the floating point value of a key by a number."),
    // Hashes.
    row("hset",         -4, WRITE | DENY_OOM | FAST,                  ONE,        "hash",         hashes::hset,          "Creates or modifies the value of a field in a hash; fields merge across nodes."),
    row("hmset",        -4, WRITE | DENY_OOM | FAST,                  ONE,        "hash",         hashes::hmset,         "Sets the values of multiple fields."),
    row("hsetnx",       4,  WRITE | DENY_OOM | FAST,                  ONE,        "hash",         hashes::hsetnx,        "Sets the value of a field in a hash only when the field doesn't exist."),
    row("hget",         3,  READ | FAST,                              ONE,        "hash",         hashes::hget,          "Returns the value of a field in a hash."),
    row("hmget",        -3, READ | FAST,                              ONE,        "hash",         hashes::hmget,         "Returns the values of all fields in a hash."),
    row("hgetall",      2,  READ,                                     ONE,        "hash",         hashes::hgetall,       "Returns all fields and values in a hash."),
    row("hdel",         -3, WRITE | FAST,                             ONE,        "hash",         hashes::hdel,          "Deletes one or more fields and their values from a hash; deletes the hash if none remain."),
    row("hexists",      3,  READ | FAST,                              ONE,        "hash",         hashes::hexists,       "Determines whether a field exists in a hash."),
    row("hlen",         2,  READ | FAST,                              ONE,        "hash",         hashes::hlen,          "Returns the number of fields in a hash."),
    row("hkeys",        2,  READ,                                     ONE,        "hash",         hashes::hkeys,         "Returns all fields in a hash."),
    row("hvals",        2,  READ,                                     ONE,        "hash",         hashes::hvals,         "Returns all values in a hash."),
    row("hstrlen",      3,  READ | FAST,                              ONE,        "hash",         hashes::hstrlen,       "Returns the length of the value of a field."),
    row("hincrby",      4,  WRITE | DENY_OOM | FAST,                  ONE,        "hash",         hashes::hincrby,       "Increments the integer value of a field in a hash by a number; increments on every node add up."),
    row("hincrbyfloat", 4,  WRITE | DENY_OOM | FAST,                  ONE,        "hash",         hashes::hincrbyfloat,  "Increments the floating point value of a field by a number."),
    row("hrandfield",   -2, READ,                                     ONE,        "hash",         hashes::hrandfield,    "Returns one or more random fields from a hash."),
    row("hscan",        -3, READ,                                     ONE,        "hash",         hashes::hscan,         "Iterates over fields and values of a hash."),
    // Keys.
    row("del",          -2, WRITE,                                    ALL,        "generic",      keys::del,             "Deletes one or more keys."),
    row("unlink",       -2, WRITE | FAST,                             ALL,        "generic",      keys::del,             "Asynchronously deletes one or more keys."),
    row("exists",       -2, READ | FAST,                              ALL,        "generic",      keys::exists,          "Determines whether one or more keys exist."),
    row("touch",        -2, READ | FAST,                              ALL,        "generic",      keys::touch,           "Returns the number of existing keys out of those specified after updating the time they were last accessed."),
    row("type",         2,  READ | FAST,                              ONE,        "generic",      keys::type_of,         "Determines the type of value stored at a key."),
    row("ttl",          2,  READ | FAST,                              ONE,        "generic",      keys::ttl,             "Returns the expiration time in seconds of a key."),
    row("pttl",         2,  READ | FAST,                              ONE,        "generic",      keys::pttl,            "Returns the expiration time in milliseconds of a key."),
    row("expiretime",   2,  READ | FAST,                              ONE,        "generic",      keys::expiretime,      "Returns the expiration time of a key as a Unix timestamp."),
    row("pexpiretime",  2,  READ | FAST,                              ONE,        "generic",      keys::pexpiretime,     "Returns the expiration time of a key as a Unix milliseconds timestamp."),
    row("expire",       -3, WRITE | FAST,                             ONE,        "generic",      keys::expire,          "Sets the expiration time of a key in seconds."),
    row("pexpire",      -3, WRITE | FAST,                             ONE,        "generic",      keys::pexpire,         "Sets the expiration time of a key in milliseconds."),
    row("expireat",     -3, WRITE | FAST,                             ONE,        "generic",      keys::expireat,        "Sets the expiration time of a key to a Unix timestamp."),
    row("pexpireat",    -3, WRITE | FAST,                             ONE,        "generic",      keys::pexpireat,       "Sets the expiration time of a key to a Unix milliseconds timestamp."),
    row("persist",      2,  WRITE | FAST,                             ONE,        "generic",      keys::persist,         "Removes the expiration time of a key."),
    row("rename",       3,  WRITE | ALONE,                            TWO,        "generic",      keys::rename,          "Renames a key and overwrites the destination."),
    row("renamenx",     3,  WRITE | ALONE | FAST,                     TWO,        "generic",      keys::renamenx,        "Renames a key only when the target key name doesn't exist."),
    row("copy",         -3, WRITE | DENY_OOM | ALONE,                 TWO,        "generic",      keys::copy,            "Copies the value of a key to a new key."),
    row("randomkey",    1,  READ,                                     NONE,       "generic",      keys::randomkey,       "Returns a random key name from the database."),
    row("keys",         2,  READ,                                     NONE,       "generic",      keys::keys,            "Returns all key names that match a pattern."),
    row("scan",         -2, READ,                                     NONE,       "generic",      keys::scan,            "Iterates over the key names in the database."),
    row("object",       -2, READ,                                     (2, 2, 1),  "generic",      keys::object,          "A container for object introspection commands."),
    row("dump",         2,  READ,                                     ONE,        "generic",      keys::dump,            "Returns a serialized representation of the value stored at a key."),
    row("restore",      -4, WRITE | DENY_OOM,                         ONE,        "generic",      keys::restore,         "Creates a key from the serialized representation of a value."),
    // Server.
    row("dbsize",       1,  READ | FAST,                              NONE,       "server",       admin::dbsize,         "Returns the number of keys in the database."),
    row("flushdb",      -1, WRITE,                                    NONE,       "server",       admin::flushdb,        "Removes all keys from the current database."),
    row("flushall",     -1, WRITE | ALONE,                            NONE,       "server",       admin::flushall,       "Removes all keys from all databases."),
    row("info",         -1, 0,                                        NONE,       "server",       admin::info,           "Returns information and statistics about the server."),
    row("command",      -1, 0,                                        NONE,       "server",       command,               "Returns detailed information about all commands."),
    row("config",       -2, 0,                                        NONE,       "server",       admin::config,         "A container for server configuration commands."),
    row("time",         1,  FAST,                                     NONE,       "server",       admin::time,           "Returns the server time."),
    row("memory",       -2, READ,                                     NONE,       "server",       admin::memory,         "A container for memory diagnostics commands."),
    row("wait",         3,  0,                                        NONE,       "generic",      admin::wait,           "Blocks until the writes sent by the connection are acknowledged by the node's hub."),
    // Cluster (a sharded node).
    row("cluster",      -2, 0,                                        NONE,       "cluster",      cluster::cluster,      "A container for Redis Cluster commands."),
    row("readonly",     1,  FAST,                                     NONE,       "cluster",      cluster::mode,         "Enables read-only queries for a connection to a Redis Cluster replica node."),
    row("readwrite",    1,  FAST,                                     NONE,       "cluster",      cluster::mode,         "Enables read-write queries for a connection to a Redis Cluster replica node."),
    row("asking",       1,  FAST,                                     NONE,       "cluster",      cluster::mode,         "Signals that a cluster client is following an -ASK redirect."),
    // Pub/sub.
    row("subscribe",    -2, PUBSUB | SUBSCRIBED,                      NONE,       "pubsub",       pubsub::subscribe,     "Listens for messages published to channels."),
    row("unsubscribe",  -1, PUBSUB | SUBSCRIBED,                      NONE,       "pubsub",       pubsub::unsubscribe,   "Stops listening to messages posted to channels."),
    row("psubscribe",   -2, PUBSUB | SUBSCRIBED,                      NONE,       "pubsub",       pubsub::psubscribe,    "Listens for messages published to channels that match one or more patterns."),
    row("punsubscribe", -1, PUBSUB | SUBSCRIBED,                      NONE,       "pubsub",       pubsub::punsubscribe,  "Stops listening to messages published to channels that match one or more patterns."),
    row("publish",      3,  PUBSUB | FAST,                            NONE,       "pubsub",       pubsub::publish,       "Posts a message to a channel, at every node of the tree."),
    row("pubsub",       -2, PUBSUB,                                   NONE,       "pubsub",       pubsub::introspect,    "A container for Pub/Sub commands."),
];

/// The table index of the command called `name` (any case).
pub(super) fn lookup(name: &[u8]) -> Option<usize> {
    static INDEX: OnceLock<HashMap<&'static [u8], usize, foldhash::fast::FixedState>> =
        OnceLock::new();
    let index = INDEX.get_or_init(|| {
        COMMANDS
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_bytes(), i))
            .collect()
    });
    let mut lower = [0u8; 16];
    let name = lower.get_mut(..name.len()).map(|buf| {
        buf.copy_from_slice(name);
        buf.make_ascii_lowercase();
        &*buf
    })?;
    index.get(name).copied()
}

/// `COMMAND`, `COMMAND COUNT|INFO|DOCS|LIST|GETKEYS|HELP`.
pub(super) fn command(_: &mut Session<'_>, args: Args<'_>, out: &mut Reply<'_>) {
    if args.len() == 1 {
        out.array(COMMANDS.len());
        for spec in COMMANDS {
            command_info(spec, out);
        }
        return;
    }
    let named = || -> Vec<Option<&'static Spec>> {
        args.from(2)
            .map(|n| lookup(n).map(|i| &COMMANDS[i]))
            .collect()
    };
    match args.upper(1).as_bytes() {
        b"COUNT" => out.int(COMMANDS.len() as i64),
        b"INFO" => {
            let specs: Vec<Option<&Spec>> = if args.len() == 2 {
                COMMANDS.iter().map(Some).collect()
            } else {
                named()
            };
            out.array(specs.len());
            for spec in specs {
                match spec {
                    Some(spec) => command_info(spec, out),
                    None => out.null_array(),
                }
            }
        }
        b"DOCS" => {
            let specs: Vec<&Spec> = if args.len() == 2 {
                COMMANDS.iter().collect()
            } else {
                named().into_iter().flatten().collect()
            };
            out.map(specs.len());
            for spec in specs {
                out.bulk(spec.name.as_bytes());
                out.map(3);
                out.bulk(b"summary");
                out.bulk(spec.summary.as_bytes());
                out.bulk(b"since");
                out.bulk(b"1.0.0");
                out.bulk(b"group");
                out.bulk(spec.group.as_bytes());
            }
        }
        b"LIST" => {
            let filter = if args.len() == 5 && args.upper(2).as_bytes() == b"FILTERBY" {
                Some((args.upper(3), args.get(4)))
            } else if args.len() == 2 {
                None
            } else {
                out.error(SYNTAX);
                return;
            };
            let names: Vec<&str> = COMMANDS
                .iter()
                .filter(|spec| match &filter {
                    None => true,
                    Some((by, value)) => match by.as_bytes() {
                        b"PATTERN" => glob::matches(value, spec.name.as_bytes()),
                        b"ACLCAT" => {
                            let cat = format!("@{}", String::from_utf8_lossy(value).to_lowercase());
                            spec.categories().contains(&cat)
                        }
                        _ => false,
                    },
                })
                .map(|spec| spec.name)
                .collect();
            out.array(names.len());
            for n in names {
                out.bulk(n.as_bytes());
            }
        }
        b"GETKEYS" if args.len() >= 3 => {
            let Some(spec) = lookup(args.get(2)).map(|i| &COMMANDS[i]) else {
                out.error("ERR Invalid command specified");
                return;
            };
            let n = args.len() - 2;
            if !spec.arity_ok(n) {
                out.error("ERR Invalid number of arguments specified for command");
                return;
            }
            if spec.keys.0 == 0 {
                out.error("ERR The command has no key arguments");
                return;
            }
            // Only positions the command line has (an optional key may be absent).
            let keys: Vec<&[u8]> = spec.key_positions(n).map(|i| args.get(2 + i)).collect();
            out.array(keys.len());
            for k in keys {
                out.bulk(k);
            }
        }
        b"HELP" => {
            let lines = [
                "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "(no subcommand)",
                "    Return details about all commands.",
                "COUNT",
                "    Return the total number of commands in this server.",
                "LIST [FILTERBY (ACLCAT <category>|PATTERN <pattern>)]",
                "    Return a list of all commands in this server.",
                "INFO [<command-name> ...]",
                "    Return details about multiple commands.",
                "DOCS [<command-name> ...]",
                "    Return documentation details about multiple commands.",
                "GETKEYS <full-command>",
                "    Return the keys from a full command.",
                "HELP",
                "    Print this help.",
            ];
            help(out, &lines);
        }
        _ => unknown_subcommand(args, "COMMAND", out),
    }
}

/// One `COMMAND INFO` entry, in Redis 7's ten-field shape.
fn command_info(spec: &Spec, out: &mut Reply<'_>) {
    out.array(10);
    out.bulk(spec.name.as_bytes());
    out.int(i64::from(spec.arity));
    let flags = spec.flag_names();
    out.set(flags.len());
    for f in flags {
        out.simple(f);
    }
    out.int(i64::from(spec.keys.0));
    out.int(i64::from(spec.keys.1));
    out.int(i64::from(spec.keys.2));
    let cats = spec.categories();
    out.set(cats.len());
    for c in cats {
        out.simple(&c);
    }
    out.set(0); // tips
    out.array(0); // key specs
    out.array(0); // subcommands
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_lower_case_and_found_in_any_case() {
        let mut seen = std::collections::HashSet::new();
        for (i, c) in COMMANDS.iter().enumerate() {
            assert!(seen.insert(c.name), "{} twice", c.name);
            assert_eq!(c.name, c.name.to_lowercase());
            assert!(c.name.len() <= 16);
            assert_eq!(lookup(c.name.to_uppercase().as_bytes()), Some(i));
        }
        assert_eq!(lookup(b"nosuchcommand"), None);
        assert_eq!(lookup(b"a-name-longer-than-sixteen-bytes"), None);
    }

    #[test]
    fn arity_follows_redis_convention() {
        let get = &COMMANDS[lookup(b"get").unwrap()];
        assert!(get.arity_ok(2) && !get.arity_ok(1) && !get.arity_ok(3));
        let set = &COMMANDS[lookup(b"set").unwrap()];
        assert!(set.arity_ok(3) && set.arity_ok(9) && !set.arity_ok(2));
    }
}
