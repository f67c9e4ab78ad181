//! Deterministic bucketing: MurmurHash3 x86_32 of `"{salt}:{key}"` (seed 0), modulo 10,000.
//!
//! Every client that implements the same two lines assigns the same users to the same buckets,
//! without a shared cache: see `docs/flags.md` ("Bucketing") and the published test vectors.

/// Number of buckets: one bucket is one basis point (0.01 %).
pub const BUCKETS: u32 = 10_000;

/// MurmurHash3, x86 32-bit variant, as published by Austin Appleby (and as Python's `mmh3.hash`
/// with `signed=False` computes it).
///
/// ```
/// assert_eq!(flags::murmur3_x86_32(b"", 0), 0);
/// assert_eq!(flags::murmur3_x86_32(b"hello", 0), 613_153_351);
/// ```
pub fn murmur3_x86_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    let mut k: u32 = 0;
    for (i, byte) in tail.iter().enumerate() {
        k |= u32::from(*byte) << (8 * i);
    }
    if !tail.is_empty() {
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
    }
    // The length is mixed in modulo 2^32, as the reference implementation does.
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// MurmurHash3 x86_32 (as [`murmur3_x86_32`]) over input given in pieces, so that
/// `"{flag_key}:{key}"` is hashed without being built: evaluation is on the serving hot path and
/// allocates nothing (about half the time of joining the text first).
struct Murmur3 {
    h: u32,
    /// Bytes of an unfinished 4-byte block, and how many.
    carry: [u8; 4],
    carried: usize,
    len: usize,
}

impl Murmur3 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;

    fn new(seed: u32) -> Self {
        Murmur3 {
            h: seed,
            carry: [0; 4],
            carried: 0,
            len: 0,
        }
    }

    fn mix(k: u32) -> u32 {
        k.wrapping_mul(Self::C1)
            .rotate_left(15)
            .wrapping_mul(Self::C2)
    }

    fn block(&mut self, block: [u8; 4]) {
        self.h ^= Self::mix(u32::from_le_bytes(block));
        self.h = self
            .h
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe654_6b64);
    }

    fn write(&mut self, mut data: &[u8]) {
        self.len += data.len();
        // Complete a block begun by the previous piece.
        while self.carried > 0 && self.carried < 4 {
            let Some((first, rest)) = data.split_first() else {
                return;
            };
            if let Some(slot) = self.carry.get_mut(self.carried) {
                *slot = *first;
            }
            self.carried += 1;
            data = rest;
        }
        if self.carried == 4 {
            self.block(self.carry);
            self.carried = 0;
        }
        let mut blocks = data.chunks_exact(4);
        for b in &mut blocks {
            self.block([b[0], b[1], b[2], b[3]]);
        }
        for (i, byte) in blocks.remainder().iter().enumerate() {
            if let Some(slot) = self.carry.get_mut(i) {
                *slot = *byte;
            }
        }
        self.carried = blocks.remainder().len();
    }

    fn finish(mut self) -> u32 {
        if self.carried > 0 {
            let mut k: u32 = 0;
            for (i, byte) in self.carry.iter().take(self.carried).enumerate() {
                k |= u32::from(*byte) << (8 * i);
            }
            self.h ^= Self::mix(k);
        }
        // The length is mixed in modulo 2^32, as the reference implementation does.
        let mut h = self.h ^ self.len as u32;
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^= h >> 16;
        h
    }
}

/// The bucket (0..10,000) of `bucketing_key` for `flag_key`: `murmur3("{flag_key}:{bucketing_key}") % 10000`.
///
/// ```
/// let b = flags::bucket("new-checkout", "user-42");
/// assert!(b < 10_000);
/// assert_eq!(b, flags::bucket("new-checkout", "user-42"));
/// ```
pub fn bucket(flag_key: &str, bucketing_key: &str) -> u16 {
    let mut h = Murmur3::new(0);
    h.write(flag_key.as_bytes());
    h.write(b":");
    h.write(bucketing_key.as_bytes());
    // BUCKETS < 2^16, so the remainder always fits.
    (h.finish() % BUCKETS) as u16
}

/// The salt of the variant split, so that the split bucket is independent of the rollout bucket.
pub(crate) fn split_salt(flag_key: &str) -> String {
    format!("{flag_key}/split")
}

/// The index of the variant whose contiguous range `[start, start + weight)` holds `bucket`;
/// ranges are laid out in declaration order from 0. `None` when the weights do not cover it.
pub fn variant_index(weights_bp: &[u32], bucket: u16) -> Option<usize> {
    let mut end: u32 = 0;
    for (i, w) in weights_bp.iter().enumerate() {
        end = end.saturating_add(*w);
        if u32::from(bucket) < end {
            return Some(i);
        }
    }
    None
}
