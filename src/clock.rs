//! Time: the wall clock (real or manual, for tests), the hybrid logical clock, and the versions it
//! stamps on every change.
//!
//! A [`Version`] is `(hlc timestamp, origin node id)`. Every node orders versions the same way, so
//! "newest version wins" gives the same answer everywhere without coordination.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The source of wall-clock time, in milliseconds since the Unix epoch.
///
/// Expiry instants are absolute wall-clock milliseconds, so an entry expires at the same instant on
/// every node. Tests swap the system clock for a [`ManualClock`] to move time by hand.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The operating system's clock.
    #[default]
    System,
    /// A clock that only moves when told to.
    Manual(ManualClock),
    /// Tokio's clock, with an offset and a drift: under paused time, a simulated node's clock.
    Runtime(RuntimeClock),
}

impl Clock {
    /// Milliseconds since the Unix epoch.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            Clock::Manual(m) => m.now_ms(),
            Clock::Runtime(r) => r.now_ms(),
        }
    }
}

/// A wall clock that reads tokio's clock: `epoch_ms` at the moment it is made, moving with
/// `tokio::time` from then on, shifted by an offset and running fast or slow by a drift. Under
/// paused time (`tokio::time::pause`) it moves only as the runtime's clock does, so several
/// simulated nodes can each have a clock of their own — skewed and drifting — and a run still
/// replays exactly.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// use std::time::Duration;
/// use leafcache::clock::RuntimeClock;
/// let fast = RuntimeClock::new(1_000_000).offset_ms(250).drift_ppm(1_000);
/// assert_eq!(fast.now_ms(), 1_000_250);
/// tokio::time::sleep(Duration::from_secs(10)).await;
/// assert_eq!(fast.now_ms(), 1_010_260, "10 s plus 0.1 %");
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct RuntimeClock {
    epoch_ms: u64,
    origin: tokio::time::Instant,
    offset_ms: i64,
    drift_ppm: i64,
}

impl RuntimeClock {
    /// A clock reading `epoch_ms` now, in tokio's time. Must be made inside a tokio runtime.
    pub fn new(epoch_ms: u64) -> Self {
        RuntimeClock {
            epoch_ms,
            origin: tokio::time::Instant::now(),
            offset_ms: 0,
            drift_ppm: 0,
        }
    }

    /// Shifts the reading by `ms` (negative: behind).
    pub fn offset_ms(mut self, ms: i64) -> Self {
        self.offset_ms = ms;
        self
    }

    /// Runs fast (positive) or slow (negative) by this many parts per million; above -1,000,000.
    pub fn drift_ppm(mut self, ppm: i64) -> Self {
        self.drift_ppm = ppm.max(-999_999);
        self
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        let elapsed = self.origin.elapsed().as_micros() as i128;
        let drifted = elapsed * (1_000_000 + self.drift_ppm as i128) / 1_000_000_000;
        (self.epoch_ms as i128 + self.offset_ms as i128 + drifted).max(0) as u64
    }
}

impl From<RuntimeClock> for Clock {
    fn from(r: RuntimeClock) -> Self {
        Clock::Runtime(r)
    }
}

/// A clock for tests: starts where it is told and moves only with [`advance`](Self::advance) or
/// [`set`](Self::set). Clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use leafcache::{Clock, ManualClock};
/// let manual = ManualClock::new(1_000);
/// let clock = Clock::from(manual.clone());
/// manual.advance(Duration::from_millis(500));
/// assert_eq!(clock.now_ms(), 1_500);
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A manual clock reading `start_ms` milliseconds since the epoch.
    pub fn new(start_ms: u64) -> Self {
        ManualClock(Arc::new(AtomicU64::new(start_ms)))
    }

    /// The current reading.
    pub fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }

    /// Sets the clock to any reading, including an earlier one (a clock that jumps backwards).
    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl From<ManualClock> for Clock {
    fn from(m: ManualClock) -> Self {
        Clock::Manual(m)
    }
}

/// A hybrid logical clock timestamp: 48 bits of physical milliseconds, 16 bits of logical counter.
///
/// Comparing two timestamps as integers orders them by physical time first, then by counter.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    const LOGICAL_BITS: u32 = 16;

    /// A timestamp from its physical (ms) and logical parts.
    pub fn new(physical_ms: u64, logical: u16) -> Self {
        Timestamp((physical_ms << Self::LOGICAL_BITS) | logical as u64)
    }

    /// The physical part, in milliseconds since the epoch.
    pub fn physical_ms(self) -> u64 {
        self.0 >> Self::LOGICAL_BITS
    }

    /// The logical counter.
    pub fn logical(self) -> u16 {
        self.0 as u16
    }
}

/// A hybrid logical clock: never goes backwards, even when the wall clock does, and moves past every
/// timestamp it has observed from other nodes.
pub struct Hlc {
    last: AtomicU64,
    clock: Clock,
}

impl Hlc {
    /// An HLC reading from `clock`.
    pub fn new(clock: Clock) -> Self {
        Hlc {
            last: AtomicU64::new(0),
            clock,
        }
    }

    /// A fresh timestamp, strictly greater than every timestamp this clock returned or observed.
    pub fn now(&self) -> Timestamp {
        let physical = Timestamp::new(self.clock.now_ms(), 0).0;
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            // The physical clock wins when it is ahead; otherwise count up from the last reading
            // (a logical overflow carries into the physical part, which stays monotonic).
            let next = physical.max(last + 1);
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Timestamp(next),
                Err(seen) => last = seen,
            }
        }
    }

    /// Records a timestamp seen from another node, so that later local timestamps order after it.
    pub fn observe(&self, ts: Timestamp) {
        self.last.fetch_max(ts.0, Ordering::AcqRel);
    }

    /// The latest timestamp this clock returned or observed, raw (0 before any).
    pub fn last(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }

    /// The wall clock this HLC reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }
}

/// A node's identity: a random UUID, compared as an integer to break version ties.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u128);

impl NodeId {
    /// A new random node id.
    pub fn random() -> Self {
        NodeId(uuid::Uuid::new_v4().as_u128())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_u128(self.0).fmt(f)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// The version of a change: its HLC timestamp, then the id of the node that wrote it.
///
/// The derived ordering compares `ts` first and `node` only on a tie, so every node picks the same
/// winner between two concurrent writes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    /// When the change was made, by the writer's HLC.
    pub ts: Timestamp,
    /// Which node made it: its writer id (see `Cache::writer_id`).
    pub node: NodeId,
}

impl fmt::Display for Version {
    /// `ms.logical@writer`, as logs show a version.
    ///
    /// ```
    /// use leafcache::{NodeId, Timestamp, Version};
    /// let v = Version { ts: Timestamp((1_700_000_000_000 << 16) | 2), node: NodeId(0xab) };
    /// assert_eq!(v.to_string(), format!("1700000000000.2@{}", NodeId(0xab)));
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}@{}",
            self.ts.physical_ms(),
            self.ts.logical(),
            self.node
        )
    }
}

/// A node id as its hex text in JSON and other human-readable formats, as bytes on the wire.
pub(crate) mod id_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::clock::NodeId;

    pub fn serialize<S: Serializer>(id: &NodeId, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(id)
        } else {
            id.serialize(s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NodeId, D::Error> {
        NodeId::deserialize(d)
    }
}

/// An optional node id: its hex text in human-readable formats (JSON numbers cannot hold 128
/// bits), its binary form on the wire.
pub(crate) mod opt_id_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::clock::NodeId;

    pub fn serialize<S: Serializer>(id: &Option<NodeId>, s: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) if s.is_human_readable() => s.collect_str(id),
            Some(id) => s.serialize_some(id),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NodeId>, D::Error> {
        Option::<NodeId>::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_packs_physical_and_logical() {
        let ts = Timestamp::new(1_700_000_000_000, 7);
        assert_eq!(ts.physical_ms(), 1_700_000_000_000);
        assert_eq!(ts.logical(), 7);
        assert!(Timestamp::new(5, 0) > Timestamp::new(4, u16::MAX));
    }

    #[test]
    fn hlc_is_monotonic_when_the_wall_clock_jumps_backwards() {
        let manual = ManualClock::new(10_000);
        let hlc = Hlc::new(manual.clone().into());
        let a = hlc.now();
        manual.set(5_000); // the wall clock jumps back 5 s
        let b = hlc.now();
        let c = hlc.now();
        assert!(a < b && b < c);
        assert_eq!(
            b.physical_ms(),
            10_000,
            "keeps the highest physical time seen"
        );
        manual.set(20_000);
        let d = hlc.now();
        assert_eq!(
            d,
            Timestamp::new(20_000, 0),
            "returns to physical time once it is ahead"
        );
    }

    #[test]
    fn hlc_moves_past_observed_remote_timestamps() {
        let manual = ManualClock::new(1_000);
        let hlc = Hlc::new(manual.into());
        let remote = Timestamp::new(9_000, 3);
        hlc.observe(remote);
        assert!(hlc.now() > remote);
        hlc.observe(Timestamp::new(1, 0)); // an old timestamp never moves it back
        assert!(hlc.now() > remote);
    }

    #[test]
    fn hlc_logical_overflow_carries_forward() {
        let hlc = Hlc::new(ManualClock::new(1).into());
        let mut prev = hlc.now();
        for _ in 0..70_000 {
            let next = hlc.now();
            assert!(next > prev);
            prev = next;
        }
    }

    #[test]
    fn hlc_is_unique_across_threads() {
        let hlc = Arc::new(Hlc::new(ManualClock::new(1).into()));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let hlc = hlc.clone();
                std::thread::spawn(move || (0..10_000).map(|_| hlc.now().0).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "no timestamp handed out twice");
    }

    #[test]
    fn versions_order_by_time_then_node() {
        let a = Version {
            ts: Timestamp::new(10, 0),
            node: NodeId(9),
        };
        let b = Version {
            ts: Timestamp::new(10, 0),
            node: NodeId(1),
        };
        let c = Version {
            ts: Timestamp::new(11, 0),
            node: NodeId(0),
        };
        assert!(b < a, "same time: the larger node id wins");
        assert!(a < c, "later time wins whatever the node");
    }
}
