//! Product quantizer: a vector is cut into `m` contiguous sub-vectors, and
//! each is replaced by the id of its nearest code word in a per-sub-vector
//! codebook of `2^nbits` words trained by k-means.
//!
//! When `m` does not divide the dimension the sub-vectors differ in length
//! by at most one: sub-vector `j` covers dimensions
//! `j * dim / m .. (j + 1) * dim / m`. When it divides, this is FAISS's
//! layout.
//!
//! Codebooks are stored transposed, as a `dim x ksub` matrix: row `d` holds
//! coordinate `d` of every code word of the sub-vector that contains `d`.
//! Tables and encodings then loop over code words innermost, which
//! vectorises.

use crate::kmeans;
use crate::rng::SplitMix64;
use crate::AnalogError;

/// One sub-quantizer's lookup table, padded to 256 entries so a `u8` code
/// indexes it without a bounds check (entries past `ksub` stay zero).
pub(crate) type Lut = [f32; 256];

/// A trained product quantizer.
#[derive(Clone, Debug)]
pub(crate) struct ProductQuantizer {
    ksub: usize,
    /// `m + 1` offsets: sub-vector `j` is `bounds[j]..bounds[j + 1]`.
    bounds: Vec<usize>,
    /// `dim * ksub` values; see the module docs.
    codebook_t: Vec<f32>,
}

/// Sub-vector boundaries for `m` sub-vectors of `dim` (`1 <= m <= dim`).
pub(crate) fn bounds(dim: usize, m: usize) -> Vec<usize> {
    (0..=m).map(|j| j * dim / m).collect()
}

impl ProductQuantizer {
    /// Trains `m` codebooks of `ksub` words on `data` (`ksub <= points`).
    pub(crate) fn train(
        data: &[f32],
        dim: usize,
        m: usize,
        ksub: usize,
        iters: usize,
        rng: &mut SplitMix64,
    ) -> Result<Self, AnalogError> {
        let bounds = bounds(dim, m);
        let mut codebook_t = vec![0.0f32; dim * ksub];
        for w in bounds.windows(2) {
            let (lo, hi) = (w[0], w[1]);
            let dsub = hi - lo;
            let sub: Vec<f32> = data
                .chunks_exact(dim)
                .flat_map(|x| x[lo..hi].iter().copied())
                .collect();
            let words = kmeans::train(&sub, dsub, ksub, iters, rng)?;
            for (code, word) in words.chunks_exact(dsub).enumerate() {
                for (d, &v) in word.iter().enumerate() {
                    codebook_t[(lo + d) * ksub + code] = v;
                }
            }
        }
        Ok(Self {
            ksub,
            bounds,
            codebook_t,
        })
    }

    /// Rebuilds a quantizer from its parts (a loaded file); the caller has
    /// checked `codebook_t.len() == dim * ksub` and `1 <= m <= dim`.
    pub(crate) fn from_parts(dim: usize, m: usize, ksub: usize, codebook_t: Vec<f32>) -> Self {
        Self {
            ksub,
            bounds: bounds(dim, m),
            codebook_t,
        }
    }

    pub(crate) fn m(&self) -> usize {
        self.bounds.len() - 1
    }

    pub(crate) fn codebook_t(&self) -> &[f32] {
        &self.codebook_t
    }

    /// Rows `lo..hi` of the transposed codebook: for each dimension, that
    /// coordinate of every code word.
    fn rows(&self, lo: usize, hi: usize) -> std::slice::ChunksExact<'_, f32> {
        self.codebook_t[lo * self.ksub..hi * self.ksub].chunks_exact(self.ksub)
    }

    /// Appends the `m` codes of `x` (nearest word per sub-vector by squared
    /// L2; ties to the lower code) to `out`. `scratch` is reused across
    /// calls to avoid an allocation per vector.
    pub(crate) fn encode(&self, x: &[f32], scratch: &mut Vec<f32>, out: &mut Vec<u8>) {
        let ksub = self.ksub;
        for w in self.bounds.windows(2) {
            scratch.clear();
            scratch.resize(ksub, 0.0);
            for (&v, words) in x[w[0]..w[1]].iter().zip(self.rows(w[0], w[1])) {
                for (s, &c) in scratch.iter_mut().zip(words) {
                    let diff = v - c;
                    *s += diff * diff;
                }
            }
            let mut best = 0usize;
            for (code, &s) in scratch.iter().enumerate() {
                if s < scratch[best] {
                    best = code;
                }
            }
            // ksub <= 256, so every code fits a byte.
            out.push(best as u8);
        }
    }

    /// Writes the reconstruction of `codes` (the concatenated code words).
    pub(crate) fn decode(&self, codes: &[u8], out: &mut [f32]) {
        for (j, w) in self.bounds.windows(2).enumerate() {
            let code = usize::from(codes[j]);
            for (o, words) in out[w[0]..w[1]].iter_mut().zip(self.rows(w[0], w[1])) {
                *o = words[code];
            }
        }
    }

    /// `table[j][c] = Σ_{d in sub j} v[d] * word_{j,c}[d]`: the inner
    /// product of `v`'s sub-vector `j` with each code word (`m` rows).
    pub(crate) fn inner_product_table(&self, v: &[f32], table: &mut [Lut]) {
        let ksub = self.ksub;
        for (w, row) in self.bounds.windows(2).zip(table.iter_mut()) {
            row.fill(0.0);
            let row = &mut row[..ksub];
            let axpy = crate::kernel::selected().axpy;
            for (&s, words) in v[w[0]..w[1]].iter().zip(self.rows(w[0], w[1])) {
                axpy(row, s, words);
            }
        }
    }

    /// `table[j][c] = |word_{j,c}|²` (`m` rows).
    pub(crate) fn norms_table(&self, table: &mut [Lut]) {
        let ksub = self.ksub;
        for (w, row) in self.bounds.windows(2).zip(table.iter_mut()) {
            row.fill(0.0);
            let row = &mut row[..ksub];
            for words in self.rows(w[0], w[1]) {
                for (t, &c) in row.iter_mut().zip(words) {
                    *t += c * c;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_split_evenly_within_one() {
        assert_eq!(bounds(52, 8), vec![0, 6, 13, 19, 26, 32, 39, 45, 52]);
        assert_eq!(bounds(52, 4), vec![0, 13, 26, 39, 52]);
        assert_eq!(bounds(3, 3), vec![0, 1, 2, 3]);
    }

    /// With as many code words as distinct sub-vectors, every training
    /// vector is reproduced exactly.
    #[test]
    fn encodes_training_points_exactly_when_ksub_covers_them() {
        let data: Vec<f32> = vec![
            0.0, 1.0, 2.0, 3.0, 4.0, //
            5.0, 6.0, 7.0, 8.0, 9.0, //
            -1.0, -2.0, -3.0, -4.0, -5.0, //
            10.0, 0.0, 10.0, 0.0, 10.0,
        ];
        let pq =
            ProductQuantizer::train(&data, 5, 2, 4, 10, &mut SplitMix64::new(3)).expect("valid");
        let mut scratch = Vec::new();
        for x in data.chunks_exact(5) {
            let mut codes = Vec::new();
            pq.encode(x, &mut scratch, &mut codes);
            assert_eq!(codes.len(), 2);
            let mut back = [0.0f32; 5];
            pq.decode(&codes, &mut back);
            assert_eq!(&back[..], x);
        }
    }

    #[test]
    fn tables_match_decoded_words() {
        let data: Vec<f32> = (0..7 * 40).map(|i| ((i * 13) % 17) as f32 - 8.0).collect();
        let pq =
            ProductQuantizer::train(&data, 7, 3, 8, 5, &mut SplitMix64::new(5)).expect("valid");
        let v: Vec<f32> = (0..7).map(|i| i as f32 * 0.5 - 1.0).collect();
        let (mut ip, mut norms) = (vec![[0.0; 256]; 3], vec![[0.0; 256]; 3]);
        pq.inner_product_table(&v, &mut ip);
        pq.norms_table(&mut norms);
        let b = bounds(7, 3);
        for code in 0..8u8 {
            let mut word = [0.0f32; 7];
            pq.decode(&[code; 3], &mut word);
            for j in 0..3 {
                let (lo, hi) = (b[j], b[j + 1]);
                let want_ip: f32 = (lo..hi).map(|d| v[d] * word[d]).sum();
                let want_n: f32 = (lo..hi).map(|d| word[d] * word[d]).sum();
                let at = usize::from(code);
                assert!((ip[j][at] - want_ip).abs() < 1e-4, "ip {j} {code}");
                assert!((norms[j][at] - want_n).abs() < 1e-3, "norm {j} {code}");
            }
        }
    }
}
