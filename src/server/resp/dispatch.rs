//! Dispatch: one request checked against the command table (authentication, arity, subscribed
//! mode), queued inside `MULTI`, or run — and an `EXEC`'s queue run. Above the command files and
//! the table; nothing below names it.

use std::sync::atomic::Ordering;

use super::args::{Args, WRONGTYPE};
use super::cluster::Elsewhere;
use super::session::{Pending, Session};
use super::table::{self, COMMANDS, NO_AUTH, NOT_QUEUED, SUBSCRIBED, Spec};
use crate::node::remote;
use crate::server::protocol::Reply;

impl Session<'_> {
    /// How the dispatcher must hold the node's gate for command `index` (from
    /// [`table::lookup`]): `Some(true)` alone, `Some(false)` shared, `None` not at all.
    pub fn gate_for(&self, index: Option<usize>) -> Option<bool> {
        let spec = &COMMANDS[index?];
        if self.multi.is_some() && !spec.has(NOT_QUEUED) {
            return None;
        }
        if spec.has(table::ALONE) {
            Some(true)
        } else if spec.has(table::READ | table::WRITE) {
            Some(false)
        } else {
            None
        }
    }

    /// Runs one request, whose command `index` is the table's (from [`table::lookup`]), writing
    /// its reply.
    pub fn execute(&mut self, index: Option<usize>, args: Args<'_>, out: &mut Reply<'_>) {
        let Some(index) = index else {
            self.refuse_in_multi();
            unknown(args, out);
            return;
        };
        let spec = &COMMANDS[index];
        if !self.authenticated && !spec.has(NO_AUTH) {
            self.refuse_in_multi();
            out.error("NOAUTH Authentication required.");
            return;
        }
        if !spec.arity_ok(args.len()) {
            self.refuse_in_multi();
            out.error(&format!(
                "ERR wrong number of arguments for '{}' command",
                spec.name
            ));
            return;
        }
        if self.subscribed() && !spec.has(SUBSCRIBED) {
            out.error(&format!(
                "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                spec.name
            ));
            return;
        }
        let asking = std::mem::take(&mut self.asking);
        if let Some(elsewhere) = (!asking)
            .then(|| super::cluster::elsewhere(self, spec.key_positions(args.len()), args))
            .flatten()
        {
            // Another shard's keys: a plain client's command is forwarded there; a cluster
            // client, a command inside `MULTI` or one that shapes this connection's transaction
            // (`WATCH`) is sent there.
            match elsewhere {
                Elsewhere::Shard {
                    slot,
                    shard,
                    door: Some(door),
                } if !self.cluster_client
                    && self.multi.is_none()
                    && !spec.has(NOT_QUEUED)
                    && !self.node.door_tls() =>
                {
                    let parts: Vec<&[u8]> = (0..args.len()).map(|i| args.get(i)).collect();
                    self.pending = Some(Pending::Forward {
                        target: remote::Target {
                            address: door,
                            resp3: self.resp3,
                            db: self.db,
                        },
                        request: remote::encode(&parts),
                        write: spec.has(table::WRITE),
                        slot,
                        shard,
                    });
                }
                other => {
                    self.refuse_in_multi();
                    out.error(&other.error());
                }
            }
            return;
        }
        if let Some(multi) = &mut self.multi
            && !spec.has(NOT_QUEUED)
        {
            multi.queue.push((index, args.to_owned()));
            self.client
                .multi
                .store(multi.queue.len() as i64, Ordering::Relaxed);
            out.simple("QUEUED");
            return;
        }
        self.run(index, spec, args, out);
    }

    /// Whether one of the command's keys holds a hash (a string command on it is refused).
    fn holds_hash(&self, spec: &Spec, args: Args<'_>) -> bool {
        (spec.key_positions(args.len()))
            .any(|i| self.cache.kind(args.get(i)) == Some(crate::cache::Kind::Hash))
    }

    fn run(&mut self, index: usize, spec: &Spec, args: Args<'_>, out: &mut Reply<'_>) {
        self.client.last_cmd.store(index, Ordering::Relaxed);
        let seq_before = if spec.has(table::WRITE) {
            self.node.current_seq()
        } else {
            0
        };
        self.caching_kept = false;
        if spec.group == "string" && !OVERWRITES.contains(&spec.name) && self.holds_hash(spec, args)
        {
            out.error(WRONGTYPE);
            return;
        }
        super::tracking::CURRENT_CLIENT.set(self.client.id);
        (spec.run)(self, args, out);
        if let Some(queue) = self.exec.take() {
            // `EXEC` checked the transaction: its commands answer into its reply.
            self.executing = true;
            for (index, queued) in &queue {
                self.run(*index, &COMMANDS[*index], queued.args(), out);
            }
            self.executing = false;
            self.caching_next = None;
        }
        super::tracking::CURRENT_CLIENT.set(0);
        if !self.caching_kept && !self.executing {
            self.caching_next = None;
        }
        if spec.has(table::WRITE) {
            let seq = self.node.current_seq();
            if seq != seq_before {
                self.last_write = seq;
            }
        }
    }

    /// A command refused while a transaction is queued makes `EXEC` abort.
    fn refuse_in_multi(&mut self) {
        if let Some(multi) = &mut self.multi {
            multi.dirty = true;
        }
    }
}

/// The unknown-command error, in Redis's words.
fn unknown(args: Args<'_>, out: &mut Reply<'_>) {
    let name = args.get(0);
    let mut msg = format!(
        "ERR unknown command '{}', with args beginning with: ",
        String::from_utf8_lossy(&name[..name.len().min(128)])
    );
    for a in args.from(1).take(4) {
        msg.push_str(&format!(
            "'{}' ",
            String::from_utf8_lossy(&a[..a.len().min(128)])
        ));
    }
    out.error(&msg);
}

/// The string commands the door does not check the type of first: they replace any type (`SET`,
/// `MSET`...), read it as Redis does (`GET` answers `WRONGTYPE` itself, checked on a miss only;
/// `MGET` answers nil), or are refused by the cache (the counters).
const OVERWRITES: &[&str] = &[
    "get",
    "mget",
    "set",
    "setnx",
    "setex",
    "psetex",
    "mset",
    "msetnx",
    // The counters answer `WRONGTYPE` from the cache itself.
    "incr",
    "decr",
    "incrby",
    "decrby",
    "incrbyfloat",
];
