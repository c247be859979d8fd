//! Partitioned caches: a key's slot (Redis Cluster's 16,384, CRC16 with `{hash tags}`) and the
//! [`SlotMap`] that gives each slot to one shard — balanced to a few slots, and moving about
//! `1/(N+1)` of the slots when a shard joins `N`.
//!
//! The scheme is rendezvous hashing with bounded loads. Each (shard, slot) pair has a score, an
//! XXH3 of the shard's name and the slot; the pairs are taken best score first and a slot goes to
//! the first shard that has room for it, each shard holding at most `ceil(16384 / N)` slots.
//! Rendezvous alone gives a slot to its best shard, so a new shard takes only the slots it scores
//! best on, from every other shard evenly; but its counts follow a multinomial (64 shards: ±6 %
//! slots), and a shard's keys follow its slots. The bound holds every shard within `N` slots of
//! its share (3 slots of 2,341 for 7 shards), at the price of the few slots that overflow a full shard moving to their next choice.
//! A ring with virtual nodes needs hundreds of points per shard for the same balance, and jump
//! hashing numbers its shards, so removing one that is not the last reshuffles the rest.

use crate::error::Error;

/// The slots of the keyspace, as in Redis Cluster.
pub const SLOTS: usize = 16_384;

/// The most shards a map holds.
pub const MAX_SHARDS: usize = 1_024;

const XMODEM: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);

/// The slot of `key`, as Redis Cluster computes it: CRC16 (XMODEM) modulo 16,384 of the key, or
/// of its hash tag — what is between the first `{` and the next `}` after it, if that is not
/// empty — so that `user:{42}:name` and `user:{42}:mail` share a slot.
///
/// ```
/// use leafcache::partition::key_slot;
/// assert_eq!(key_slot(b"foo"), 12182); // as `CLUSTER KEYSLOT foo` answers
/// assert_eq!(key_slot(b"user:{42}:name"), key_slot(b"user:{42}:mail"));
/// assert_eq!(key_slot(b"{}x"), key_slot(b"{}x")); // an empty tag: the whole key
/// ```
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    XMODEM.checksum(hashed) % SLOTS as u16
}

/// Which shard holds each slot. Built from the shards' names alone, so every node of every shard
/// that knows the same names computes the same map.
#[derive(Clone, PartialEq, Eq)]
pub struct SlotMap {
    shards: Vec<String>,
    /// Per slot, the index of its shard in `shards`.
    owners: Box<[u16]>,
}

impl std::fmt::Debug for SlotMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotMap")
            .field("shards", &self.shards)
            .field("ranges", &self.ranges().len())
            .finish()
    }
}

/// A (shard, slot) pair's score: the higher, the more the slot belongs there.
fn score(shard: &str, slot: usize) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3Default::new();
    h.update(&(shard.len() as u64).to_le_bytes());
    h.update(shard.as_bytes());
    h.update(&(slot as u16).to_le_bytes());
    h.digest()
}

impl SlotMap {
    /// The map of `shards` (names, in any order: the map does not depend on it).
    ///
    /// ```
    /// use leafcache::partition::SlotMap;
    /// let three = SlotMap::new(["a", "b", "c"])?;
    /// let counts: Vec<usize> = (0..3).map(|i| three.slots_of(i)).collect();
    /// assert!(counts.iter().all(|&n| (5460..=5462).contains(&n)), "{counts:?}");
    /// // A fourth shard takes about a quarter of the slots, from each of the others.
    /// let four = SlotMap::new(["a", "b", "c", "d"])?;
    /// let moved = three.moved_to(&four);
    /// assert!((4096..4300).contains(&moved), "{moved}");
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for no shard, more than [`MAX_SHARDS`], an empty name or a name
    /// given twice.
    pub fn new<S: Into<String>>(shards: impl IntoIterator<Item = S>) -> Result<SlotMap, Error> {
        let mut shards: Vec<String> = shards.into_iter().map(Into::into).collect();
        shards.sort();
        let invalid = |reason: String| Error::InvalidConfig {
            what: "shards",
            reason,
        };
        if shards.is_empty() || shards.len() > MAX_SHARDS {
            return Err(invalid(format!(
                "{} shards; a map holds 1 to {MAX_SHARDS}",
                shards.len()
            )));
        }
        if let Some(w) = shards.windows(2).find(|w| w[0] == w[1]) {
            return Err(invalid(format!("{:?} is named twice", w[0])));
        }
        if shards.iter().any(String::is_empty) {
            return Err(invalid("a shard has an empty name".into()));
        }
        let n = shards.len();
        let cap = SLOTS.div_ceil(n);
        let mut held = vec![0usize; n];
        let best_open = |slot: usize, held: &[usize]| -> (u64, usize) {
            (0..n)
                .filter(|&s| held[s] < cap)
                .map(|s| (score(&shards[s], slot), s))
                .max()
                .expect("the caps hold every slot")
        };
        // Pairs best score first: a heap of each unplaced slot's best shard with room. A full
        // shard stays full, so skipping it when a slot comes up again keeps the order exact.
        let mut heap: std::collections::BinaryHeap<(u64, usize, usize)> = (0..SLOTS)
            .map(|slot| {
                let (score, shard) = best_open(slot, &held);
                (score, slot, shard)
            })
            .collect();
        let mut owners = vec![0u16; SLOTS].into_boxed_slice();
        while let Some((_, slot, shard)) = heap.pop() {
            if held[shard] < cap {
                held[shard] += 1;
                owners[slot] = shard as u16;
            } else {
                let (score, shard) = best_open(slot, &held);
                heap.push((score, slot, shard));
            }
        }
        Ok(SlotMap { shards, owners })
    }

    /// The shards' names, sorted: a shard's index in the map is its place here.
    pub fn shards(&self) -> &[String] {
        &self.shards
    }

    /// The index of the shard that holds `slot`.
    pub fn owner(&self, slot: u16) -> usize {
        usize::from(self.owners[usize::from(slot) % SLOTS])
    }

    /// The name of the shard that holds `key`.
    pub fn shard_of(&self, key: &[u8]) -> &str {
        &self.shards[self.owner(key_slot(key))]
    }

    /// How many slots shard `index` holds.
    pub fn slots_of(&self, index: usize) -> usize {
        self.owners
            .iter()
            .filter(|&&o| usize::from(o) == index)
            .count()
    }

    /// The map as runs of consecutive slots: `(first, last, shard index)`, in slot order.
    pub fn ranges(&self) -> Vec<(u16, u16, usize)> {
        let mut out: Vec<(u16, u16, usize)> = Vec::new();
        for (slot, &owner) in self.owners.iter().enumerate() {
            let (slot, owner) = (slot as u16, usize::from(owner));
            match out.last_mut() {
                Some((_, last, o)) if *o == owner && *last + 1 == slot => *last = slot,
                _ => out.push((slot, slot, owner)),
            }
        }
        out
    }

    /// How many slots are held by another shard in `next` (by name) than here.
    pub fn moved_to(&self, next: &SlotMap) -> usize {
        (0..SLOTS)
            .filter(|&s| self.shards[self.owner(s as u16)] != next.shards[next.owner(s as u16)])
            .count()
    }
}

/// One node of a sharded cluster, as every node describes it to cluster clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardNode {
    /// Its name, unique in the cluster.
    pub name: String,
    /// Its RESP door (`host:port`), if it has one: where cluster clients are sent.
    pub resp: Option<String>,
    /// The root of its shard's tree (a Redis Cluster "master"); the others are told as replicas.
    pub primary: bool,
}

impl ShardNode {
    /// The 40 hexadecimal characters Redis Cluster names a node by: a SHA-256 of its name, so
    /// every node computes the same id for every other.
    pub fn id(&self) -> String {
        use sha2::Digest;
        let hash = sha2::Sha256::digest(self.name.as_bytes());
        hash.iter().take(20).map(|b| format!("{b:02x}")).collect()
    }
}

/// The sharded cluster as one node knows it: the slot map, every shard's nodes (in the map's
/// shard order), and which shard and node it is.
#[derive(Clone, Debug)]
pub struct Shards {
    /// Which shard holds each slot.
    pub map: SlotMap,
    /// Per shard (as [`SlotMap::shards`] orders them), its nodes.
    pub members: Vec<Vec<ShardNode>>,
    /// This node's shard, an index into `members`.
    pub mine: usize,
    /// This node's name.
    pub me: String,
    /// While slots move (a shard joined or left): the map and shards before, so that a slot's new
    /// owner reads a key it misses through from the slot's previous owner.
    pub previous: Option<(SlotMap, Vec<Vec<ShardNode>>)>,
}

impl Shards {
    /// The cluster of `members` (shard name, its nodes), seen from node `me`.
    ///
    /// ```
    /// use leafcache::partition::{ShardNode, Shards};
    /// let node = |name: &str, port: u16, primary| ShardNode {
    ///     name: name.into(),
    ///     resp: Some(format!("127.0.0.1:{port}")),
    ///     primary,
    /// };
    /// let shards = Shards::new(
    ///     vec![
    ///         ("a".to_string(), vec![node("a-hub", 7000, true), node("a-leaf", 7001, false)]),
    ///         ("b".to_string(), vec![node("b-hub", 7002, true)]),
    ///     ],
    ///     "a-leaf",
    /// )?;
    /// let slot = leafcache::partition::key_slot(b"foo");
    /// let owner = shards.map.owner(slot);
    /// assert_eq!(shards.owns(slot), owner == shards.mine);
    /// # Ok::<(), leafcache::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`SlotMap::new`]; [`Error::InvalidConfig`] if `me` is in no shard.
    pub fn new(members: Vec<(String, Vec<ShardNode>)>, me: &str) -> Result<Shards, Error> {
        let (map, ordered) = mapped(members)?;
        let mine = ordered
            .iter()
            .position(|nodes| nodes.iter().any(|n| n.name == me))
            .ok_or_else(|| Error::InvalidConfig {
                what: "shards",
                reason: format!("node {me:?} is in none of the shards"),
            })?;
        Ok(Shards {
            map,
            members: ordered,
            mine,
            me: me.to_string(),
            previous: None,
        })
    }

    /// These shards, moving from `before` (shard names and nodes): see
    /// [`moved_in_from`](Self::moved_in_from).
    ///
    /// # Errors
    /// As [`SlotMap::new`], for `before`.
    pub fn moving_from(mut self, before: Vec<(String, Vec<ShardNode>)>) -> Result<Shards, Error> {
        self.previous = Some(mapped(before)?);
        Ok(self)
    }

    /// While slots move: the door of `slot`'s previous owner, if this node's shard holds it now
    /// and another shard held it before — where a key this node misses may still be.
    pub fn moved_in_from(&self, slot: u16) -> Option<&str> {
        let (map, members) = self.previous.as_ref()?;
        let before = &map.shards()[map.owner(slot)];
        if !self.owns(slot) || *before == self.map.shards()[self.mine] {
            return None;
        }
        let nodes = &members[map.owner(slot)];
        (nodes.iter().filter(|n| n.primary))
            .chain(nodes.iter())
            .find_map(|n| n.resp.as_deref())
    }

    /// Whether this node's shard holds `slot`.
    pub fn owns(&self, slot: u16) -> bool {
        self.map.owner(slot) == self.mine
    }

    /// Where a client is sent for `slot`: the RESP door of the owning shard's primary, or of its
    /// first node with one.
    pub fn address_for(&self, slot: u16) -> Option<&str> {
        let nodes = &self.members[self.map.owner(slot)];
        (nodes.iter().filter(|n| n.primary))
            .chain(nodes.iter())
            .find_map(|n| n.resp.as_deref())
    }

    /// This node's description.
    pub fn myself(&self) -> &ShardNode {
        (self.members[self.mine].iter())
            .find(|n| n.name == self.me)
            .expect("checked by new")
    }
}

/// The slot map of shards `members` (name, nodes), and their nodes in its shard order.
fn mapped(members: Vec<(String, Vec<ShardNode>)>) -> Result<(SlotMap, Vec<Vec<ShardNode>>), Error> {
    let map = SlotMap::new(members.iter().map(|(name, _)| name.clone()))?;
    let mut ordered: Vec<Vec<ShardNode>> = vec![Vec::new(); map.shards().len()];
    for (name, nodes) in members {
        let at = map
            .shards()
            .iter()
            .position(|s| *s == name)
            .expect("mapped");
        ordered[at] = nodes;
    }
    Ok((map, ordered))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_those_redis_cluster_computes() {
        // Values from Redis Cluster's specification and `CLUSTER KEYSLOT`.
        assert_eq!(XMODEM.checksum(b"123456789"), 0x31c3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_ne!(
            key_slot(b"foo{}{bar}"),
            key_slot(b"bar"),
            "an empty first tag"
        );
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
    }

    #[test]
    fn the_map_does_not_depend_on_the_order_of_the_names_and_refuses_bad_ones() {
        let a = SlotMap::new(["x", "y", "z"]).unwrap();
        let b = SlotMap::new(["z", "x", "y"]).unwrap();
        assert_eq!(a, b);
        assert!(SlotMap::new(Vec::<String>::new()).is_err());
        assert!(SlotMap::new(["a", "a"]).is_err());
        assert!(SlotMap::new([""]).is_err());
        let one = SlotMap::new(["only"]).unwrap();
        assert_eq!(one.ranges(), [(0, 16383, 0)]);
    }

    #[test]
    fn every_shard_holds_its_share_within_the_caps_slack() {
        for n in [2, 3, 5, 7, 16, 64, 100] {
            let names: Vec<String> = (0..n).map(|i| format!("shard-{i}")).collect();
            let map = SlotMap::new(&names).unwrap();
            let counts: Vec<usize> = (0..n).map(|i| map.slots_of(i)).collect();
            let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
            let cap = SLOTS.div_ceil(n);
            // Every shard at most `cap`; the `cap * n - SLOTS` slots short fall on a few.
            assert!(
                max <= cap && min >= cap - (cap * n - SLOTS),
                "{n} shards: {min}..{max}"
            );
            assert_eq!(counts.iter().sum::<usize>(), SLOTS);
        }
    }
}
