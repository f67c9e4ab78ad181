//! RFC 6962 Merkle trees over SHA-256: leaf and node hashing, the incremental [`Frontier`],
//! tree heads of leaf slices, inclusion and consistency proofs, and their verifiers as RFC 9162
//! §2.1.3.2 and §2.1.4.2 give them.
//!
//! ```
//! use audit::merkle::{inclusion_proof, leaf_hash, root_of, verify_inclusion};
//! let leaves: Vec<_> = (0u8..5).map(|i| leaf_hash(&[i])).collect();
//! let root = root_of(&leaves);
//! let proof = inclusion_proof(3, &leaves).unwrap();
//! assert!(verify_inclusion(3, 5, &leaves[3], &proof, &root).is_ok());
//! ```

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The head of the empty tree: SHA-256 of nothing.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// SHA-256(0x00 || data): the hash of a leaf's data.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(data);
    hasher.finalize().into()
}

/// SHA-256(0x01 || left || right): the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut block = [0u8; 65];
    block[0] = 0x01;
    block[1..33].copy_from_slice(left);
    block[33..].copy_from_slice(right);
    Sha256::digest(block).into()
}

/// The incremental state of a tree: the roots of the perfect subtrees that make up
/// `[0, size)`, one per set bit of `size`, largest first (a "compact range"). Appending is
/// O(log n) hashing at worst and one on average; the root folds them right to left.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

/// Why bytes are not a serialised [`Frontier`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrontierError {
    #[error("a frontier is 8 bytes of size and 32 bytes per set bit of the size; got {0} bytes")]
    Length(usize),
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// How many leaves the tree has.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash.
    pub fn append(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut size = self.size;
        // Each trailing one bit of the old size is a perfect subtree the new leaf completes.
        while size & 1 == 1 {
            match self.nodes.pop() {
                Some(left) => hash = node_hash(&left, &hash),
                None => break,
            }
            size >>= 1;
        }
        self.nodes.push(hash);
        self.size += 1;
    }

    /// The tree head (RFC 6962 MTH) of the leaves appended so far.
    pub fn root(&self) -> Hash {
        let mut nodes = self.nodes.iter().rev();
        match nodes.next() {
            None => EMPTY_ROOT,
            Some(last) => nodes.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }

    /// `size` (8 bytes big-endian), then the subtree roots, largest first.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 32 * self.nodes.len());
        out.extend_from_slice(&self.size.to_be_bytes());
        for node in &self.nodes {
            out.extend_from_slice(node);
        }
        out
    }

    /// Reads [`Frontier::to_bytes`]'s output back, checking the node count fits the size.
    pub fn from_bytes(bytes: &[u8]) -> Result<Frontier, FrontierError> {
        let err = || FrontierError::Length(bytes.len());
        let (size, rest) = bytes.split_first_chunk::<8>().ok_or_else(err)?;
        let size = u64::from_be_bytes(*size);
        if rest.len() != 32 * size.count_ones() as usize {
            return Err(err());
        }
        let nodes = rest
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Ok(Frontier { size, nodes })
    }
}

/// The tree head (RFC 6962 MTH) of a slice of leaf hashes.
pub fn root_of(leaves: &[Hash]) -> Hash {
    let mut frontier = Frontier::new();
    for leaf in leaves {
        frontier.append(*leaf);
    }
    frontier.root()
}

/// Why a proof cannot be made or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf {index} is not in a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree size {first} is larger than tree size {second}")]
    SizesOutOfOrder { first: u64, second: u64 },
    #[error("the proof has the wrong number of hashes for these sizes")]
    WrongLength,
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let p = n.next_power_of_two();
    if p == n {
        n / 2
    } else {
        p / 2
    }
}

/// The audit path of leaf `index` in the tree over `leaves` (RFC 6962 §2.1.1 PATH), leaf side
/// first.
pub fn inclusion_proof(index: u64, leaves: &[Hash]) -> Result<Vec<Hash>, ProofError> {
    let size = leaves.len() as u64;
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut proof = Vec::new();
    path(index as usize, leaves, &mut proof);
    Ok(proof)
}

fn path(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(m, &leaves[..k], out);
        out.push(root_of(&leaves[k..]));
    } else {
        path(m - k, &leaves[k..], out);
        out.push(root_of(&leaves[..k]));
    }
}

/// Checks that `leaf` is leaf `index` of the tree of `size` leaves whose head is `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The proof that the tree of the first `first` leaves is a prefix of the tree over `leaves`
/// (RFC 6962 §2.1.2 PROOF). Empty when `first` is 0 or the whole tree.
pub fn consistency_proof(first: u64, leaves: &[Hash]) -> Result<Vec<Hash>, ProofError> {
    let second = leaves.len() as u64;
    if first > second {
        return Err(ProofError::SizesOutOfOrder { first, second });
    }
    let mut proof = Vec::new();
    if first > 0 && first < second {
        subproof(first as usize, leaves, true, &mut proof);
    }
    Ok(proof)
}

fn subproof(m: usize, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !complete {
            out.push(root_of(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &leaves[..k], complete, out);
        out.push(root_of(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, out);
        out.push(root_of(&leaves[..k]));
    }
}

/// Checks that the tree of `first` leaves with head `first_root` is a prefix of the tree of
/// `second` leaves with head `second_root` (RFC 9162 §2.1.4.2). The empty tree is a prefix
/// of every tree.
pub fn verify_consistency(
    first: u64,
    second: u64,
    proof: &[Hash],
    first_root: &Hash,
    second_root: &Hash,
) -> Result<(), ProofError> {
    if first > second {
        return Err(ProofError::SizesOutOfOrder { first, second });
    }
    if first == second || first == 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        let ok = if first == 0 {
            first_root == &EMPTY_ROOT
        } else {
            first_root == second_root
        };
        return if ok {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((seed, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*seed, *seed);
    for c in rest {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != first_root || &sr != second_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(s: &str) -> Hash {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).unwrap();
        out
    }

    /// The leaves of the Certificate Transparency reference tests (RFC 6962 implementations
    /// share them).
    fn ct_leaves() -> Vec<Hash> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|d| leaf_hash(&hex::decode(d).unwrap()))
        .collect()
    }

    const CT_ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    #[test]
    fn roots_match_the_certificate_transparency_reference_vectors() {
        let leaves = ct_leaves();
        let mut frontier = Frontier::new();
        assert_eq!(frontier.root(), h(CT_ROOTS[0]));
        for n in 1..=8 {
            frontier.append(leaves[n - 1]);
            assert_eq!(frontier.root(), h(CT_ROOTS[n]), "size {n}");
            assert_eq!(root_of(&leaves[..n]), h(CT_ROOTS[n]), "size {n}");
        }
    }

    #[test]
    fn inclusion_proofs_match_the_reference_vectors() {
        let leaves = ct_leaves();
        // (leaf index, tree size, path)
        let vectors: [(u64, usize, &[&str]); 4] = [
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (index, size, expected) in vectors {
            let proof = inclusion_proof(index, &leaves[..size]).unwrap();
            let expected: Vec<Hash> = expected.iter().map(|s| h(s)).collect();
            assert_eq!(proof, expected, "leaf {index} of {size}");
            let root = h(CT_ROOTS[size]);
            verify_inclusion(index, size as u64, &leaves[index as usize], &proof, &root).unwrap();
        }
    }

    #[test]
    fn consistency_proofs_match_the_reference_vectors() {
        let leaves = ct_leaves();
        let vectors: [(u64, usize, &[&str]); 4] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (first, second, expected) in vectors {
            let proof = consistency_proof(first, &leaves[..second]).unwrap();
            let expected: Vec<Hash> = expected.iter().map(|s| h(s)).collect();
            assert_eq!(proof, expected, "{first} -> {second}");
            verify_consistency(
                first,
                second as u64,
                &proof,
                &h(CT_ROOTS[first as usize]),
                &h(CT_ROOTS[second]),
            )
            .unwrap();
        }
    }

    #[test]
    fn bad_arguments_are_errors_not_panics() {
        let leaves = ct_leaves();
        assert!(inclusion_proof(8, &leaves).is_err());
        assert!(inclusion_proof(0, &[]).is_err());
        assert!(consistency_proof(9, &leaves).is_err());
        let root = root_of(&leaves);
        assert!(verify_inclusion(8, 8, &leaves[0], &[], &root).is_err());
        assert!(verify_inclusion(0, 8, &leaves[0], &[], &root).is_err());
        assert!(verify_consistency(5, 3, &[], &root, &root).is_err());
        assert!(verify_consistency(3, 5, &[], &root, &root).is_err());
        assert!(verify_consistency(0, 5, &[], &EMPTY_ROOT, &root).is_ok());
        assert!(verify_consistency(0, 5, &[root], &EMPTY_ROOT, &root).is_err());
    }

    fn leaves(n: usize, salt: u8) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&[(i & 0xff) as u8, (i >> 8) as u8, salt]))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Every leaf's inclusion proof verifies at every size; flipping any bit of the leaf,
        /// the root or any proof hash, or using another index, makes it fail.
        #[test]
        fn inclusion_proofs_verify_and_any_flip_fails(
            n in 1usize..200, salt in any::<u8>(), pick in any::<prop::sample::Index>(),
            byte in 0usize..32, bit in 0u8..8, target in any::<prop::sample::Index>(),
        ) {
            let leaves = leaves(n, salt);
            let root = root_of(&leaves);
            let i = pick.index(n);
            let proof = inclusion_proof(i as u64, &leaves).unwrap();
            prop_assert!(verify_inclusion(i as u64, n as u64, &leaves[i], &proof, &root).is_ok());
            let mask = 1u8 << bit;
            let mut bad_leaf = leaves[i];
            bad_leaf[byte] ^= mask;
            prop_assert!(verify_inclusion(i as u64, n as u64, &bad_leaf, &proof, &root).is_err());
            let mut bad_root = root;
            bad_root[byte] ^= mask;
            prop_assert!(verify_inclusion(i as u64, n as u64, &leaves[i], &proof, &bad_root).is_err());
            if !proof.is_empty() {
                let mut bad = proof.clone();
                let t = target.index(bad.len());
                bad[t][byte] ^= mask;
                prop_assert!(verify_inclusion(i as u64, n as u64, &leaves[i], &bad, &root).is_err());
                let mut short = proof.clone();
                short.pop();
                prop_assert!(verify_inclusion(i as u64, n as u64, &leaves[i], &short, &root).is_err());
            }
            if n > 1 {
                let other = (i + 1) % n;
                prop_assert!(verify_inclusion(other as u64, n as u64, &leaves[i], &proof, &root).is_err());
            }
        }

        /// Every consistency proof between two sizes verifies; flipping any bit of either root
        /// or any proof hash makes it fail.
        #[test]
        fn consistency_proofs_verify_and_any_flip_fails(
            n in 1usize..200, salt in any::<u8>(), a in any::<prop::sample::Index>(),
            byte in 0usize..32, bit in 0u8..8, target in any::<prop::sample::Index>(),
        ) {
            let leaves = leaves(n, salt);
            let m = a.index(n) + 1;
            let first_root = root_of(&leaves[..m]);
            let second_root = root_of(&leaves);
            let proof = consistency_proof(m as u64, &leaves).unwrap();
            prop_assert!(verify_consistency(m as u64, n as u64, &proof, &first_root, &second_root).is_ok());
            let mask = 1u8 << bit;
            let mut bad = first_root;
            bad[byte] ^= mask;
            prop_assert!(verify_consistency(m as u64, n as u64, &proof, &bad, &second_root).is_err());
            let mut bad = second_root;
            bad[byte] ^= mask;
            prop_assert!(verify_consistency(m as u64, n as u64, &proof, &first_root, &bad).is_err());
            if !proof.is_empty() {
                let mut bad = proof.clone();
                let t = target.index(bad.len());
                bad[t][byte] ^= mask;
                prop_assert!(verify_consistency(m as u64, n as u64, &bad, &first_root, &second_root).is_err());
            }
            // A tree that differs inside the first m leaves is not consistent with it.
            let mut forked = leaves.clone();
            forked[a.index(m)][0] ^= 1;
            let forked_root = root_of(&forked);
            let forked_proof = consistency_proof(m as u64, &forked).unwrap();
            prop_assert!(verify_consistency(m as u64, n as u64, &forked_proof, &first_root, &forked_root).is_err());
        }

        /// The frontier agrees with the recursive definition and survives serialisation.
        #[test]
        fn frontier_matches_recursive_root_and_round_trips(n in 0usize..300, salt in any::<u8>()) {
            let leaves = leaves(n, salt);
            let mut frontier = Frontier::new();
            for l in &leaves {
                frontier.append(*l);
            }
            prop_assert_eq!(frontier.root(), recursive_root(&leaves));
            let back = Frontier::from_bytes(&frontier.to_bytes()).unwrap();
            prop_assert_eq!(back, frontier);
        }

        #[test]
        fn frontier_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = Frontier::from_bytes(&bytes);
        }
    }

    fn recursive_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => EMPTY_ROOT,
            1 => leaves[0],
            n => {
                let k = split(n);
                node_hash(&recursive_root(&leaves[..k]), &recursive_root(&leaves[k..]))
            }
        }
    }
}
