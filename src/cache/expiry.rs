//! The expiry index of a shard: a radix heap of `(expires_at, seq)` — `O(1)` to add an entry's
//! deadline on a write, amortised `O(log)` of the key width to take the earliest — with lazy
//! deletion: a rewritten, deleted or evicted entry leaves its element behind, recognised as stale
//! when it reaches the top (its seq no longer names a live entry) and dropped then; the heap is
//! rebuilt once stale elements outnumber live ones.
//!
//! A radix heap fits because expiry is monotone: an element is only taken once its deadline has
//! passed, and every later write's `(expires_at, seq)` is above it — its seq is newer, and its
//! deadline is in the future. (Should the wall clock step back, a deadline below the last one taken
//! goes to the bottom bucket, which is searched whole: order is kept then too.)
//!
//! The count and sum of deadlines `INFO` reports are kept beside it, exact.

/// Deadlines of one shard's live entries.
#[derive(Debug)]
pub(crate) struct Expiry {
    /// `buckets[0]` holds elements at or below `last`; `buckets[i]` those whose highest bit
    /// differing from `last` is bit `i - 1`. Every element of a lower bucket is below every
    /// element of a higher one.
    buckets: Vec<Vec<u128>>,
    /// The last element taken.
    last: u128,
    /// The smallest element and where it is (bucket, position), once looked for.
    min: Option<(u128, usize, usize)>,
    /// Elements held, stale ones included.
    held: usize,
    /// Live entries with a deadline, and the sum of their deadlines.
    count: usize,
    sum: u128,
}

#[inline]
fn key(at: u64, seq: u64) -> u128 {
    (u128::from(at) << 64) | u128::from(seq)
}

/// `(expires_at, seq)` of an element.
#[inline]
pub(crate) fn parts(k: u128) -> (u64, u64) {
    ((k >> 64) as u64, k as u64)
}

impl Default for Expiry {
    fn default() -> Self {
        Expiry {
            buckets: vec![Vec::new(); 129],
            last: 0,
            min: None,
            held: 0,
            count: 0,
            sum: 0,
        }
    }
}

impl Expiry {
    #[inline]
    fn bucket(&self, k: u128) -> usize {
        if k <= self.last {
            0
        } else {
            128 - (k ^ self.last).leading_zeros() as usize
        }
    }

    #[inline]
    fn file(&mut self, k: u128) {
        let b = self.bucket(k);
        self.buckets[b].push(k);
        self.held += 1;
        if self.min.is_some_and(|(m, _, _)| k < m) {
            self.min = None;
        }
    }

    /// An entry written with deadline `at` under `seq`.
    #[inline]
    pub fn add(&mut self, at: u64, seq: u64) {
        self.file(key(at, seq));
        self.count += 1;
        self.sum += u128::from(at);
    }

    /// That entry was rewritten or removed: its element goes stale.
    #[inline]
    pub fn remove(&mut self, at: u64) {
        self.count -= 1;
        self.sum -= u128::from(at);
    }

    /// Live entries with a deadline, and the sum of their deadlines (ms).
    pub fn stats(&self) -> (usize, u128) {
        (self.count, self.sum)
    }

    /// The smallest element held, stale or not, as `(expires_at, seq)`. Looks through one bucket
    /// (the lowest non-empty one) the first time after a change below it.
    pub fn first(&mut self) -> Option<(u64, u64)> {
        if self.min.is_none() {
            let b = self.buckets.iter().position(|b| !b.is_empty())?;
            let (pos, &k) = self.buckets[b]
                .iter()
                .enumerate()
                .min_by_key(|(_, k)| **k)?;
            self.min = Some((k, b, pos));
        }
        self.min.map(|(k, _, _)| parts(k))
    }

    /// Takes the element [`first`](Self::first) returned; the rest of its bucket moves down
    /// (each element moves at most once per bit).
    pub fn pop(&mut self) {
        if self.min.is_none() && self.first().is_none() {
            return;
        }
        let Some((k, b, pos)) = self.min.take() else {
            return;
        };
        self.buckets[b].swap_remove(pos);
        self.held -= 1;
        if k > self.last {
            self.last = k;
        }
        if b > 0 {
            for k in std::mem::take(&mut self.buckets[b]) {
                let to = self.bucket(k);
                self.buckets[to].push(k);
            }
        }
    }

    /// Elements held, stale ones included (tests).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held
    }

    /// Whether stale elements outnumber live ones enough to rebuild.
    pub fn wants_rebuild(&self) -> bool {
        self.held > 2 * self.count + 1024
    }

    /// Refiles only the live deadlines, `(at, seq)` of every live entry that has one.
    pub fn rebuild(&mut self, live: impl Iterator<Item = (u64, u64)>) {
        for b in &mut self.buckets {
            b.clear();
        }
        self.held = 0;
        self.min = None;
        for (at, seq) in live {
            self.file(key(at, seq));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_come_out_in_order_whatever_order_they_went_in() {
        let mut e = Expiry::default();
        let mut want = Vec::new();
        let mut x: u64 = 12345;
        let mut seq = 0;
        let mut out = Vec::new();
        for round in 0..50u64 {
            for _ in 0..40 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                seq += 1;
                let at = 1_000 * round + 1 + (x >> 33) % 5_000;
                e.add(at, seq);
                want.push(key(at, seq));
            }
            // Take what is due by now, as a sweep does; later additions are all in the future.
            let now = 1_000 * (round + 1);
            while let Some((at, seq)) = e.first() {
                if at > now {
                    break;
                }
                e.pop();
                out.push(key(at, seq));
            }
        }
        while let Some((at, seq)) = e.first() {
            e.pop();
            out.push(key(at, seq));
        }
        want.sort_unstable();
        assert_eq!(out, want);
        assert_eq!(e.stats().0, 2_000);
    }
}
