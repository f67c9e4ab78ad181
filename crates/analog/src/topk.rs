//! Bounded top-k selection in O(n log k) with a deterministic order.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::{Metric, Neighbor};

/// A candidate; `key` is oriented so that smaller is better.
#[derive(Clone, Copy)]
struct Entry {
    key: f32,
    id: u32,
    score: f32,
}

impl Entry {
    /// Better-first order: key, then lower id.
    fn rank(&self, other: &Self) -> Ordering {
        self.key.total_cmp(&other.key).then(self.id.cmp(&other.id))
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.rank(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank(other)
    }
}

/// Keeps the `k` best candidates; the max-heap's top is the worst kept one,
/// so a new candidate costs one comparison unless it gets in.
pub(crate) struct TopK {
    k: usize,
    metric: Metric,
    heap: BinaryHeap<Entry>,
}

impl TopK {
    pub(crate) fn new(k: usize, metric: Metric) -> Self {
        Self {
            k,
            metric,
            heap: BinaryHeap::with_capacity(k),
        }
    }

    /// Offers a candidate. Ids must arrive in increasing order: then an
    /// equal key never displaces a kept entry (the kept one has the lower
    /// id), which is what makes the strict `<` below correct.
    #[inline]
    pub(crate) fn offer(&mut self, id: u32, score: f32) {
        let key = match self.metric {
            _ if score.is_nan() => f32::INFINITY,
            Metric::InnerProduct => -score,
            Metric::L2 => score,
        };
        // `+ 0.0` maps -0.0 to +0.0 so the two tie (total_cmp would split them).
        let entry = Entry {
            key: key + 0.0,
            id,
            score,
        };
        if self.heap.len() < self.k {
            self.heap.push(entry);
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if entry.key < worst.key {
                *worst = entry;
            }
        }
    }

    /// Offers `scores[i]` with id `first + i`, for each `i` in order. Once
    /// `k` candidates are kept, runs of 8 are screened with one vectorised
    /// comparison against the worst kept key, so most candidates cost a
    /// fraction of a comparison.
    pub(crate) fn offer_run(&mut self, first: u32, scores: &[f32]) {
        let mut id = first;
        let mut bound = self.bound();
        let sign = match self.metric {
            Metric::InnerProduct => -1.0f32,
            Metric::L2 => 1.0,
        };
        let mut chunks = scores.chunks_exact(8);
        for chunk in &mut chunks {
            // Non-short-circuit `|` so the 8 comparisons compile to one
            // vector compare. A NaN compares false: it ranks last.
            let not_full = self.heap.len() < self.k;
            if not_full || chunk.iter().fold(false, |any, &s| any | (sign * s < bound)) {
                for &score in chunk {
                    self.offer(id, score);
                    id = id.wrapping_add(1);
                }
                bound = self.bound();
            } else {
                id = id.wrapping_add(8);
            }
        }
        for &score in chunks.remainder() {
            self.offer(id, score);
            id = id.wrapping_add(1);
        }
    }

    /// Keys below the worst kept key may get in once full (`-inf` for
    /// `k = 0`: nothing gets in; unused before full).
    fn bound(&self) -> f32 {
        self.heap
            .peek()
            .map_or(f32::NEG_INFINITY, |worst| worst.key)
    }

    /// Offers a candidate in any id order: an equal key displaces a kept
    /// entry only when its id is lower, so the result is the same as for
    /// ids in increasing order.
    #[inline]
    pub(crate) fn offer_unordered(&mut self, id: u32, score: f32) {
        let key = match self.metric {
            _ if score.is_nan() => f32::INFINITY,
            Metric::InnerProduct => -score,
            Metric::L2 => score,
        };
        let entry = Entry {
            key: key + 0.0,
            id,
            score,
        };
        if self.heap.len() < self.k {
            self.heap.push(entry);
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if entry.rank(&worst) == Ordering::Less {
                *worst = entry;
            }
        }
    }

    /// The kept candidates, best first.
    pub(crate) fn into_sorted(self) -> Vec<Neighbor> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|e| Neighbor {
                id: e.id,
                score: e.score,
            })
            .collect()
    }
}
