//! Bounded top-k selection with a deterministic order.
//!
//! For `k <= SORTED_MAX` the kept entries are a sorted array: the bound (the
//! k-th best) is always exact, so as few candidates as possible get past
//! the screen, and an accepted one is a short `memmove`. For larger `k`
//! (e.g. "return everything, sorted") candidates that beat the bound go
//! into a buffer of `4k` entries; when it fills, `select_nth_unstable` keeps
//! the best `k` and the k-th becomes the new bound, so each candidate costs
//! amortised O(1) instead of O(k). Either way a rejected candidate costs
//! one comparison, or a fraction of one when screened 8 at a time by
//! [`TopK::offer_run`].

use std::cmp::Ordering;

use crate::{Metric, Neighbor};

/// A candidate; `key` is oriented so that smaller is better.
#[derive(Clone, Copy)]
struct Entry {
    key: f32,
    id: u32,
    score: f32,
}

impl Entry {
    /// Ranks after `other` (keys are never NaN).
    #[inline]
    fn worse_than(&self, other: &Self) -> bool {
        self.key > other.key || (self.key == other.key && self.id > other.id)
    }

    /// Better-first order: key, then lower id.
    fn rank(&self, other: &Self) -> Ordering {
        self.key.total_cmp(&other.key).then(self.id.cmp(&other.id))
    }
}

/// Largest `k` kept as a sorted array.
const SORTED_MAX: usize = 32;

/// Keeps the `k` best candidates seen (ties: lower id first).
pub(crate) struct TopK {
    k: usize,
    metric: Metric,
    /// `k <= SORTED_MAX`: the best candidates so far, sorted best first,
    /// at most `k`. Otherwise: candidates that beat the bound when offered,
    /// compacted to the best `k` whenever it reaches `capacity`.
    buf: Vec<Entry>,
    sorted: bool,
    capacity: usize,
    /// The k-th best entry kept (sorted mode), or after the last compaction:
    /// anything ranking at or below it can never be in the result. `None`
    /// until `k` entries were kept.
    bound: Option<Entry>,
}

impl TopK {
    pub(crate) fn new(k: usize, metric: Metric) -> Self {
        let sorted = k <= SORTED_MAX;
        // 4k keeps compactions rare.
        let capacity = if sorted { k + 1 } else { k.saturating_mul(4) };
        Self {
            k,
            metric,
            buf: Vec::with_capacity(capacity.min(1 << 16)),
            sorted,
            capacity,
            bound: None,
        }
    }

    /// The oriented key: smaller is better, NaN last, `-0.0` as `+0.0`
    /// (so the two tie, which `total_cmp` alone would split).
    #[inline]
    fn key(&self, score: f32) -> f32 {
        let key = match self.metric {
            _ if score.is_nan() => f32::INFINITY,
            Metric::InnerProduct => -score,
            Metric::L2 => score,
        };
        key + 0.0
    }

    /// Offers a candidate. Ids must arrive in increasing order: then an
    /// equal key never beats the bound (the bound has the lower id), which
    /// is what makes the strict `<` correct.
    #[inline]
    pub(crate) fn offer(&mut self, id: u32, score: f32) {
        let key = self.key(score);
        if self.bound.is_none_or(|b| key < b.key) {
            self.push(Entry { key, id, score });
        }
    }

    /// Offers a candidate in any id order: an equal key beats the bound
    /// only with a lower id, so the result is the same as for ids in
    /// increasing order.
    #[inline]
    pub(crate) fn offer_unordered(&mut self, id: u32, score: f32) {
        let entry = Entry {
            key: self.key(score),
            id,
            score,
        };
        if self.bound.is_none_or(|b| entry.rank(&b) == Ordering::Less) {
            self.push(entry);
        }
    }

    /// Offers `scores[i]` with id `first + i`, for each `i` in order. Once
    /// `k` candidates are kept, the scores are screened 8 at a time against
    /// the bound with one vector compare ([`kernel`](crate::kernel)), and
    /// only the lanes that beat it are offered, so most candidates cost a
    /// fraction of a comparison.
    pub(crate) fn offer_run(&mut self, first: u32, scores: &[f32]) {
        let whole = scores.len() / 8 * 8;
        let mut at = 0;
        let screen = crate::kernel::selected().screen;
        while at < whole {
            let Some(bound) = self.bound else {
                // Not full yet: everything gets in.
                for (i, &score) in scores[at..at + 8].iter().enumerate() {
                    self.offer(first.wrapping_add((at + i) as u32), score);
                }
                at += 8;
                continue;
            };
            // Keys are -score (IP) or score (L2): beating the bound's key
            // is a score above -key, or below key. NaN never beats it.
            let hit = match self.metric {
                Metric::InnerProduct => screen(&scores[at..whole], -bound.key, true),
                Metric::L2 => screen(&scores[at..whole], bound.key, false),
            };
            let Some((offset, mut lanes)) = hit else {
                break;
            };
            at += offset;
            // Each offer re-checks against the bound as it tightens.
            while lanes != 0 {
                let lane = lanes.trailing_zeros() as usize;
                self.offer(first.wrapping_add((at + lane) as u32), scores[at + lane]);
                lanes &= lanes - 1;
            }
            at += 8;
        }
        for (i, &score) in scores.iter().enumerate().skip(whole) {
            self.offer(first.wrapping_add(i as u32), score);
        }
    }

    /// Out of line, so the reject path of the offers stays small enough
    /// to inline into the scan loops.
    #[inline(never)]
    fn push(&mut self, entry: Entry) {
        if self.sorted {
            if self.k == 0 {
                return;
            }
            // Callers only push what beats the bound, so when full the
            // worst kept entry leaves.
            if self.buf.len() == self.k {
                self.buf.pop();
            }
            // Insertion from the end: keys are never NaN (mapped to +inf)
            // or -0.0, so plain comparisons order them.
            self.buf.push(entry);
            let mut at = self.buf.len() - 1;
            while at > 0 && self.buf[at - 1].worse_than(&entry) {
                self.buf[at] = self.buf[at - 1];
                at -= 1;
            }
            self.buf[at] = entry;
            if self.buf.len() == self.k {
                self.bound = self.buf.last().copied();
            }
            return;
        }
        self.buf.push(entry);
        if self.buf.len() >= self.capacity {
            self.compact();
        }
    }

    /// Keeps the best `k` and makes the k-th the bound.
    fn compact(&mut self) {
        if self.k == 0 {
            self.buf.clear();
            return;
        }
        if self.buf.len() > self.k {
            self.buf.select_nth_unstable_by(self.k - 1, Entry::rank);
            self.buf.truncate(self.k);
        }
        if self.buf.len() == self.k {
            self.bound = self.buf.iter().copied().max_by(Entry::rank);
        }
    }

    /// The kept candidates, best first.
    pub(crate) fn into_sorted(mut self) -> Vec<Neighbor> {
        if self.buf.len() > self.k {
            // Select first so only k entries are sorted.
            self.compact();
        }
        self.buf.sort_unstable_by(Entry::rank);
        self.buf.truncate(self.k);
        self.buf
            .into_iter()
            .map(|e| Neighbor {
                id: e.id,
                score: e.score,
            })
            .collect()
    }
}
