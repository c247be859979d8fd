//! The command table: every command the RESP door runs, with its arity, flags, key positions,
//! group and summary — what dispatch checks before running a command, what `MULTI` queues, and
//! what `COMMAND` (`COUNT`, `INFO`, `DOCS`, `LIST`) publishes for clients and `redis-cli`.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::session::{Args, Session};
use super::{admin, hashes, keys, pubsub, session, strings};
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

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $keys:expr, $group:literal, $run:path, $summary:literal) => {
        Spec {
            name: $name,
            arity: $arity,
            flags: $flags,
            keys: $keys,
            group: $group,
            summary: $summary,
            run: $run,
        }
    };
}

const NONE: (i32, i32, i32) = (0, 0, 0);
const ONE: (i32, i32, i32) = (1, 1, 1);
const ALL: (i32, i32, i32) = (1, -1, 1);
const TWO: (i32, i32, i32) = (1, 2, 1);

/// Every command, in no particular order.
pub(super) static COMMANDS: &[Spec] = &[
    // Connection.
    spec!(
        "auth",
        -2,
        NO_AUTH | FAST | NOT_QUEUED,
        NONE,
        "connection",
        session::auth,
        "Authenticates the connection."
    ),
    spec!(
        "hello",
        -1,
        NO_AUTH | FAST | NOT_QUEUED,
        NONE,
        "connection",
        session::hello,
        "Handshakes with the server: picks RESP2 or RESP3, authenticates, names the connection."
    ),
    spec!(
        "ping",
        -1,
        FAST | SUBSCRIBED,
        NONE,
        "connection",
        session::ping,
        "Returns the server's liveliness response."
    ),
    spec!(
        "echo",
        2,
        FAST,
        NONE,
        "connection",
        session::echo,
        "Returns the given string."
    ),
    spec!(
        "quit",
        -1,
        NO_AUTH | FAST | SUBSCRIBED | NOT_QUEUED,
        NONE,
        "connection",
        session::quit,
        "Closes the connection."
    ),
    spec!(
        "reset",
        1,
        NO_AUTH | FAST | SUBSCRIBED | NOT_QUEUED,
        NONE,
        "connection",
        session::reset,
        "Resets the connection."
    ),
    spec!(
        "select",
        2,
        FAST,
        NONE,
        "connection",
        session::select,
        "Changes the selected database (a named cache)."
    ),
    spec!(
        "client",
        -2,
        0,
        NONE,
        "connection",
        admin::client,
        "A container for client connection commands."
    ),
    // Transactions.
    spec!(
        "multi",
        1,
        FAST | NOT_QUEUED,
        NONE,
        "transactions",
        session::multi,
        "Starts a transaction."
    ),
    spec!(
        "exec",
        1,
        ALONE | NOT_QUEUED,
        NONE,
        "transactions",
        session::exec,
        "Executes all commands in a transaction."
    ),
    spec!(
        "discard",
        1,
        FAST | NOT_QUEUED,
        NONE,
        "transactions",
        session::discard,
        "Discards a transaction."
    ),
    spec!(
        "watch",
        -2,
        READ | FAST | NOT_QUEUED,
        ALL,
        "transactions",
        session::watch,
        "Monitors changes to keys to determine the execution of a transaction."
    ),
    spec!(
        "unwatch",
        1,
        FAST,
        NONE,
        "transactions",
        session::unwatch,
        "Forgets about watched keys of a transaction."
    ),
    // Strings.
    spec!(
        "get",
        2,
        READ | FAST,
        ONE,
        "string",
        strings::get,
        "Returns the string value of a key."
    ),
    spec!(
        "set",
        -3,
        WRITE | DENY_OOM,
        ONE,
        "string",
        strings::set,
        "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist."
    ),
    spec!(
        "getdel",
        2,
        WRITE | FAST,
        ONE,
        "string",
        strings::getdel,
        "Returns the string value of a key after deleting the key."
    ),
    spec!(
        "getex",
        -2,
        WRITE | FAST,
        ONE,
        "string",
        strings::getex,
        "Returns the string value of a key after setting its expiration time."
    ),
    spec!(
        "getset",
        3,
        WRITE | DENY_OOM | FAST,
        ONE,
        "string",
        strings::getset,
        "Returns the previous string value of a key after setting it to a new value."
    ),
    spec!(
        "setex",
        4,
        WRITE | DENY_OOM,
        ONE,
        "string",
        strings::setex,
        "Sets the string value and expiration time of a key."
    ),
    spec!(
        "psetex",
        4,
        WRITE | DENY_OOM,
        ONE,
        "string",
        strings::psetex,
        "Sets both string value and expiration time in milliseconds of a key."
    ),
    spec!(
        "setnx",
        3,
        WRITE | DENY_OOM | FAST,
        ONE,
        "string",
        strings::setnx,
        "Sets the string value of a key only when the key doesn't exist."
    ),
    spec!(
        "mset",
        -3,
        WRITE | DENY_OOM | ALONE,
        (1, -1, 2),
        "string",
        strings::mset,
        "Atomically creates or modifies the string values of one or more keys."
    ),
    spec!(
        "msetnx",
        -3,
        WRITE | DENY_OOM | ALONE,
        (1, -1, 2),
        "string",
        strings::msetnx,
        "Atomically modifies the string values of one or more keys only when all keys don't exist."
    ),
    spec!(
        "mget",
        -2,
        READ | FAST,
        ALL,
        "string",
        strings::mget,
        "Atomically returns the string values of one or more keys."
    ),
    spec!(
        "append",
        3,
        WRITE | DENY_OOM | FAST,
        ONE,
        "string",
        strings::append,
        "Appends a string to the value of a key. Creates the key if it doesn't exist."
    ),
    spec!(
        "getrange",
        4,
        READ,
        ONE,
        "string",
        strings::getrange,
        "Returns a substring of the string stored at a key."
    ),
    spec!(
        "substr",
        4,
        READ,
        ONE,
        "string",
        strings::getrange,
        "Returns a substring from a string value."
    ),
    spec!(
        "setrange",
        4,
        WRITE | DENY_OOM,
        ONE,
        "string",
        strings::setrange,
        "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist."
    ),
    spec!(
        "strlen",
        2,
        READ | FAST,
        ONE,
        "string",
        strings::strlen,
        "Returns the length of a string value."
    ),
    spec!(
        "lcs",
        -3,
        READ,
        TWO,
        "string",
        strings::lcs,
        "Finds the longest common substring."
    ),
    spec!(
        "incr",
        2,
        WRITE | DENY_OOM | FAST,
        ONE,
        "string",
        strings::incr,
        "Increments the integer value of a key by one; increments on every node add up."
    ),
    spec!(
        "decr",
        2,
        WRITE | DENY_OOM | FAST,
        ONE,
        "string",
        strings::decr,
        "Decrements the integer value of a key by one."
    ),
    spec!(
        "incrby",
        3,
        WRITE | DENY_OOM | FAST,
        ONE,
        "string",
        strings::incrby,
        "Increments the integer value of a key by a number."
    ),
    spec!(
        "decrby",
        3,
        WRITE | DENY_OOM | FAST,
        ONE,
        "string",
        strings::decrby,
        "Decrements a number from the integer value of a key."
    ),
    spec!(
        "incrbyfloat",
        3,
        WRITE | DENY_OOM | FAST,
        ONE,
        "string",
        strings::incrbyfloat,
        "Increment the floating point value of a key by a number."
    ),
    // Hashes.
    spec!(
        "hset",
        -4,
        WRITE | DENY_OOM | FAST,
        ONE,
        "hash",
        hashes::hset,
        "Creates or modifies the value of a field in a hash; fields merge across nodes."
    ),
    spec!(
        "hmset",
        -4,
        WRITE | DENY_OOM | FAST,
        ONE,
        "hash",
        hashes::hmset,
        "Sets the values of multiple fields."
    ),
    spec!(
        "hsetnx",
        4,
        WRITE | DENY_OOM | FAST,
        ONE,
        "hash",
        hashes::hsetnx,
        "Sets the value of a field in a hash only when the field doesn't exist."
    ),
    spec!(
        "hget",
        3,
        READ | FAST,
        ONE,
        "hash",
        hashes::hget,
        "Returns the value of a field in a hash."
    ),
    spec!(
        "hmget",
        -3,
        READ | FAST,
        ONE,
        "hash",
        hashes::hmget,
        "Returns the values of all fields in a hash."
    ),
    spec!(
        "hgetall",
        2,
        READ,
        ONE,
        "hash",
        hashes::hgetall,
        "Returns all fields and values in a hash."
    ),
    spec!(
        "hdel",
        -3,
        WRITE | FAST,
        ONE,
        "hash",
        hashes::hdel,
        "Deletes one or more fields and their values from a hash; deletes the hash if none remain."
    ),
    spec!(
        "hexists",
        3,
        READ | FAST,
        ONE,
        "hash",
        hashes::hexists,
        "Determines whether a field exists in a hash."
    ),
    spec!(
        "hlen",
        2,
        READ | FAST,
        ONE,
        "hash",
        hashes::hlen,
        "Returns the number of fields in a hash."
    ),
    spec!(
        "hkeys",
        2,
        READ,
        ONE,
        "hash",
        hashes::hkeys,
        "Returns all fields in a hash."
    ),
    spec!(
        "hvals",
        2,
        READ,
        ONE,
        "hash",
        hashes::hvals,
        "Returns all values in a hash."
    ),
    spec!(
        "hstrlen",
        3,
        READ | FAST,
        ONE,
        "hash",
        hashes::hstrlen,
        "Returns the length of the value of a field."
    ),
    spec!(
        "hincrby",
        4,
        WRITE | DENY_OOM | FAST,
        ONE,
        "hash",
        hashes::hincrby,
        "Increments the integer value of a field in a hash by a number; increments on every node add up."
    ),
    spec!(
        "hincrbyfloat",
        4,
        WRITE | DENY_OOM | FAST,
        ONE,
        "hash",
        hashes::hincrbyfloat,
        "Increments the floating point value of a field by a number."
    ),
    spec!(
        "hrandfield",
        -2,
        READ,
        ONE,
        "hash",
        hashes::hrandfield,
        "Returns one or more random fields from a hash."
    ),
    spec!(
        "hscan",
        -3,
        READ,
        ONE,
        "hash",
        hashes::hscan,
        "Iterates over fields and values of a hash."
    ),
    // Keys.
    spec!(
        "del",
        -2,
        WRITE,
        ALL,
        "generic",
        keys::del,
        "Deletes one or more keys."
    ),
    spec!(
        "unlink",
        -2,
        WRITE | FAST,
        ALL,
        "generic",
        keys::del,
        "Asynchronously deletes one or more keys."
    ),
    spec!(
        "exists",
        -2,
        READ | FAST,
        ALL,
        "generic",
        keys::exists,
        "Determines whether one or more keys exist."
    ),
    spec!(
        "touch",
        -2,
        READ | FAST,
        ALL,
        "generic",
        keys::touch,
        "Returns the number of existing keys out of those specified after updating the time they were last accessed."
    ),
    spec!(
        "type",
        2,
        READ | FAST,
        ONE,
        "generic",
        keys::type_of,
        "Determines the type of value stored at a key."
    ),
    spec!(
        "ttl",
        2,
        READ | FAST,
        ONE,
        "generic",
        keys::ttl,
        "Returns the expiration time in seconds of a key."
    ),
    spec!(
        "pttl",
        2,
        READ | FAST,
        ONE,
        "generic",
        keys::pttl,
        "Returns the expiration time in milliseconds of a key."
    ),
    spec!(
        "expiretime",
        2,
        READ | FAST,
        ONE,
        "generic",
        keys::expiretime,
        "Returns the expiration time of a key as a Unix timestamp."
    ),
    spec!(
        "pexpiretime",
        2,
        READ | FAST,
        ONE,
        "generic",
        keys::pexpiretime,
        "Returns the expiration time of a key as a Unix milliseconds timestamp."
    ),
    spec!(
        "expire",
        -3,
        WRITE | FAST,
        ONE,
        "generic",
        keys::expire,
        "Sets the expiration time of a key in seconds."
    ),
    spec!(
        "pexpire",
        -3,
        WRITE | FAST,
        ONE,
        "generic",
        keys::pexpire,
        "Sets the expiration time of a key in milliseconds."
    ),
    spec!(
        "expireat",
        -3,
        WRITE | FAST,
        ONE,
        "generic",
        keys::expireat,
        "Sets the expiration time of a key to a Unix timestamp."
    ),
    spec!(
        "pexpireat",
        -3,
        WRITE | FAST,
        ONE,
        "generic",
        keys::pexpireat,
        "Sets the expiration time of a key to a Unix milliseconds timestamp."
    ),
    spec!(
        "persist",
        2,
        WRITE | FAST,
        ONE,
        "generic",
        keys::persist,
        "Removes the expiration time of a key."
    ),
    spec!(
        "rename",
        3,
        WRITE | ALONE,
        TWO,
        "generic",
        keys::rename,
        "Renames a key and overwrites the destination."
    ),
    spec!(
        "renamenx",
        3,
        WRITE | ALONE | FAST,
        TWO,
        "generic",
        keys::renamenx,
        "Renames a key only when the target key name doesn't exist."
    ),
    spec!(
        "copy",
        -3,
        WRITE | DENY_OOM | ALONE,
        TWO,
        "generic",
        keys::copy,
        "Copies the value of a key to a new key."
    ),
    spec!(
        "randomkey",
        1,
        READ,
        NONE,
        "generic",
        keys::randomkey,
        "Returns a random key name from the database."
    ),
    spec!(
        "keys",
        2,
        READ,
        NONE,
        "generic",
        keys::keys,
        "Returns all key names that match a pattern."
    ),
    spec!(
        "scan",
        -2,
        READ,
        NONE,
        "generic",
        keys::scan,
        "Iterates over the key names in the database."
    ),
    spec!(
        "object",
        -2,
        READ,
        (2, 2, 1),
        "generic",
        keys::object,
        "A container for object introspection commands."
    ),
    spec!(
        "dump",
        2,
        READ,
        ONE,
        "generic",
        keys::dump,
        "Returns a serialized representation of the value stored at a key."
    ),
    spec!(
        "restore",
        -4,
        WRITE | DENY_OOM,
        ONE,
        "generic",
        keys::restore,
        "Creates a key from the serialized representation of a value."
    ),
    // Server.
    spec!(
        "dbsize",
        1,
        READ | FAST,
        NONE,
        "server",
        admin::dbsize,
        "Returns the number of keys in the database."
    ),
    spec!(
        "flushdb",
        -1,
        WRITE,
        NONE,
        "server",
        admin::flushdb,
        "Removes all keys from the current database."
    ),
    spec!(
        "flushall",
        -1,
        WRITE | ALONE,
        NONE,
        "server",
        admin::flushall,
        "Removes all keys from all databases."
    ),
    spec!(
        "info",
        -1,
        0,
        NONE,
        "server",
        admin::info,
        "Returns information and statistics about the server."
    ),
    spec!(
        "command",
        -1,
        0,
        NONE,
        "server",
        admin::command,
        "Returns detailed information about all commands."
    ),
    spec!(
        "config",
        -2,
        0,
        NONE,
        "server",
        admin::config,
        "A container for server configuration commands."
    ),
    spec!(
        "time",
        1,
        FAST,
        NONE,
        "server",
        admin::time,
        "Returns the server time."
    ),
    spec!(
        "memory",
        -2,
        READ,
        NONE,
        "server",
        admin::memory,
        "A container for memory diagnostics commands."
    ),
    spec!(
        "wait",
        3,
        0,
        NONE,
        "generic",
        admin::wait,
        "Blocks until the writes sent by the connection are acknowledged by the node's hub."
    ),
    // Pub/sub.
    spec!(
        "subscribe",
        -2,
        PUBSUB | SUBSCRIBED,
        NONE,
        "pubsub",
        pubsub::subscribe,
        "Listens for messages published to channels."
    ),
    spec!(
        "unsubscribe",
        -1,
        PUBSUB | SUBSCRIBED,
        NONE,
        "pubsub",
        pubsub::unsubscribe,
        "Stops listening to messages posted to channels."
    ),
    spec!(
        "psubscribe",
        -2,
        PUBSUB | SUBSCRIBED,
        NONE,
        "pubsub",
        pubsub::psubscribe,
        "Listens for messages published to channels that match one or more patterns."
    ),
    spec!(
        "punsubscribe",
        -1,
        PUBSUB | SUBSCRIBED,
        NONE,
        "pubsub",
        pubsub::punsubscribe,
        "Stops listening to messages published to channels that match one or more patterns."
    ),
    spec!(
        "publish",
        3,
        PUBSUB | FAST,
        NONE,
        "pubsub",
        pubsub::publish,
        "Posts a message to a channel, at every node of the tree."
    ),
    spec!(
        "pubsub",
        -2,
        PUBSUB,
        NONE,
        "pubsub",
        pubsub::introspect,
        "A container for Pub/Sub commands."
    ),
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
