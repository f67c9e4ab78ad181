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

/// The bucket (0..10,000) of `bucketing_key` for `flag_key`: `murmur3("{flag_key}:{bucketing_key}") % 10000`.
///
/// ```
/// let b = flags::bucket("new-checkout", "user-42");
/// assert!(b < 10_000);
/// assert_eq!(b, flags::bucket("new-checkout", "user-42"));
/// ```
pub fn bucket(flag_key: &str, bucketing_key: &str) -> u16 {
    // Evaluation is on the serving hot path: keys of usual length are joined on the stack.
    const STACK: usize = 512;
    let len = flag_key.len() + 1 + bucketing_key.len();
    if len <= STACK {
        let mut buf = [0u8; STACK];
        let (flag_part, rest) = buf.split_at_mut(flag_key.len());
        flag_part.copy_from_slice(flag_key.as_bytes());
        if let Some((colon, key_part)) = rest.split_first_mut() {
            *colon = b':';
            if let Some(dst) = key_part.get_mut(..bucketing_key.len()) {
                dst.copy_from_slice(bucketing_key.as_bytes());
            }
        }
        if let Some(joined) = buf.get(..len) {
            return bucket_of_bytes(joined);
        }
    }
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(flag_key.as_bytes());
    buf.push(b':');
    buf.extend_from_slice(bucketing_key.as_bytes());
    bucket_of_bytes(&buf)
}

/// The salt of the variant split, so that the split bucket is independent of the rollout bucket.
pub(crate) fn split_salt(flag_key: &str) -> String {
    format!("{flag_key}/split")
}

fn bucket_of_bytes(bytes: &[u8]) -> u16 {
    // BUCKETS < 2^16, so the remainder always fits.
    (murmur3_x86_32(bytes, 0) % BUCKETS) as u16
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
