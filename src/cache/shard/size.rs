//! What entries and dead records are accounted for in a byte capacity (`max_bytes`).

use crate::cache::store::INLINE_MAX;

/// Bytes every entry costs whatever its size: its 64-byte slab slot, and its places in the hash
/// table and the log array at their load factors. [`entry_size`] adds what its key and value take.
///
/// Measured, not estimated (`cargo bench --bench memory`): 1M entries of 10-byte keys and 64-byte
/// values filled into an empty cache add 175 resident bytes each, 79 beside the 96-byte block of
/// key and value; a cache bounded by `max_bytes` and written four times over, evicting all along,
/// holds about 100 beside it (its table between growths, log holes, freed blocks, dead records).
/// 96 keeps both within a few percent of what `max_bytes` promises. Re-measure when the entry
/// layout changes.
pub const ENTRY_OVERHEAD: usize = 96;

/// The block the allocator hands out for `n` bytes: glibc's malloc adds an 8-byte header and rounds
/// to 16, 32 at least.
#[inline]
const fn block(n: usize) -> usize {
    let n = if n + 8 < 32 { 32 } else { n + 8 };
    n.div_ceil(16) * 16
}

/// The bytes an entry of a `key_len`-byte key and a `value_len`-byte value is accounted for in
/// byte capacities (`max_bytes`): what it takes in memory, within a few percent.
///
/// A value up to 256 bytes shares one allocation (and a 4-byte length) with its key; a longer one is kept as the
/// `Bytes` it was written with, behind a small box, and read without a copy.
///
/// ```
/// use leafcache::{ENTRY_OVERHEAD, entry_size};
/// assert_eq!(entry_size(10, 64), ENTRY_OVERHEAD + 96);
/// assert!(entry_size(10, 1 << 20) > 1 << 20);
/// ```
#[inline]
pub const fn entry_size(key_len: usize, value_len: usize) -> usize {
    if value_len <= INLINE_MAX {
        ENTRY_OVERHEAD + block(4 + key_len + value_len)
    } else {
        // The key's block, the box of the out-of-line value, the value's buffer and the header
        // `Bytes` shares it through.
        ENTRY_OVERHEAD + block(4 + key_len) + block(40) + block(value_len) + 32
    }
}

/// Bytes a dead record is accounted for: its slot, table and log places, and its key's block.
#[inline]
pub(crate) const fn dead_size(key_len: usize) -> usize {
    ENTRY_OVERHEAD + block(4 + key_len)
}
