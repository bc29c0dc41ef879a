//! The Merkle tree of a stream, with RFC 9162 (Certificate Transparency 2.0) hashing.
//!
//! Leaves are hashed `SHA-256(0x00 || record)`, interior nodes `SHA-256(0x01 || left ||
//! right)`, and the tree of `n` leaves splits at the largest power of two below `n` (RFC 9162
//! section 2.1.1). The empty tree's hash is `SHA-256("")`.
//!
//! # Proofs
//!
//! [`inclusion_proof`] and [`verify_inclusion`] are RFC 9162 section 2.1.3 (a leaf is in the
//! tree of a given root); [`consistency_proof`] and [`verify_consistency`] are section 2.1.4 (the
//! tree of an older root is a prefix of the tree of a newer one). The verifiers follow the
//! algorithms of sections 2.1.3.2 and 2.1.4.2 step by step, and first check the proof's length
//! against the one the sizes imply, so that a proof of the wrong length is refused before any
//! hashing and named as such. No proof is longer than [`PROOF_LEN_MAX`] (a tree of at most
//! 2^64 - 1 leaves has at most 64 levels), and nothing here panics on any size or index.
//!
//! Proofs are built from the leaf hashes with the recursive definitions of the RFC, which hash
//! every leaf of the tree once per proof: the writer answers few proofs, and the verifier of a
//! whole stream recomputes roots with a [`Frontier`] instead. [`InclusionProver`] builds the
//! same inclusion proof from leaves given one at a time, in memory of the tree's height: the
//! proof of a record of an export, read from its file.

use aws_lc_rs::digest;

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The hash of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    sha256(&[&[]])
}

/// A leaf's hash: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    sha256(&[&[0x00], data])
}

/// An interior node's hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[0x01], left, right])
}

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The right edge of a growing tree: the roots of its perfect subtrees, largest first (one per
/// set bit of the size). Appending is amortized one node hash; the root costs one per subtree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// (height, hash), heights strictly decreasing.
    nodes: Vec<(u32, Hash)>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (0u32, leaf);
        while let Some(&(height, left)) = self.nodes.last() {
            if height != node.0 {
                break;
            }
            self.nodes.pop();
            node = (height + 1, node_hash(&left, &node.1));
        }
        self.nodes.push(node);
        self.size += 1;
    }

    /// The tree's root hash (RFC 9162 `MTH`).
    pub fn root(&self) -> Hash {
        let mut nodes = self.nodes.iter().rev();
        let Some(&(_, mut acc)) = nodes.next() else {
            return empty_root();
        };
        for (_, left) in nodes {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

/// The longest proof of any tree: one hash per level of a tree of up to 2^64 - 1 leaves.
/// Longer proofs are refused before any hashing.
pub const PROOF_LEN_MAX: usize = 64;

/// Why a proof could not be built, or did not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not below the tree's size.
    #[error("leaf index {index} is out of range for a tree of {size} leaves")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The tree's size.
        size: u64,
    },
    /// A tree size is larger than the leaves at hand, or the old size of a consistency proof
    /// larger than the new one.
    #[error("tree size {size} is out of range: at most {limit}")]
    SizeOutOfRange {
        /// The size asked for.
        size: u64,
        /// The largest size allowed here.
        limit: u64,
    },
    /// The proof does not have the number of hashes the index and sizes imply.
    #[error("the proof has {len} hashes where these sizes need {expected}")]
    WrongProofLength {
        /// Hashes in the proof.
        len: usize,
        /// Hashes the sizes imply.
        expected: usize,
    },
    /// The proof leads to another root than the one given.
    #[error("the proof does not lead to the given root")]
    RootMismatch,
}

/// The root of the tree of `leaves` (RFC 9162 `MTH`); the empty tree's for no leaf.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [leaf] => *leaf,
        _ => {
            let (left, right) = leaves.split_at(split(leaves.len()));
            node_hash(&root(left), &root(right))
        }
    }
}

/// The largest power of two below `n`, where the RFC splits a tree of `n >= 2` leaves.
fn split(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n.saturating_sub(1)).leading_zeros())
}

/// The first `size` of `leaves`, or why there are not that many.
fn prefix(leaves: &[Hash], size: u64) -> Result<&[Hash], ProofError> {
    usize::try_from(size)
        .ok()
        .and_then(|n| leaves.get(..n))
        .ok_or(ProofError::SizeOutOfRange {
            size,
            limit: u64::try_from(leaves.len()).unwrap_or(u64::MAX),
        })
}

/// The inclusion proof (audit path) of the leaf at `index` in the tree of the first `size`
/// `leaves` (RFC 9162 section 2.1.3.1), ordered from the leaf's sibling up to the root's
/// child.
pub fn inclusion_proof(leaves: &[Hash], index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
    let tree = prefix(leaves, size)?;
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut proof = Vec::with_capacity(inclusion_len(index, size));
    // `index < size <= leaves.len()`, so it fits a usize.
    let m = usize::try_from(index).map_err(|_| ProofError::IndexOutOfRange { index, size })?;
    audit_path(m, tree, &mut proof);
    Ok(proof)
}

/// RFC 9162 `PATH(m, D[n])`, appended to `out` deepest first.
fn audit_path(m: usize, tree: &[Hash], out: &mut Vec<Hash>) {
    if tree.len() <= 1 {
        return;
    }
    let (left, right) = tree.split_at(split(tree.len()));
    if m < left.len() {
        audit_path(m, left, out);
        out.push(root(right));
    } else {
        audit_path(m - left.len(), right, out);
        out.push(root(left));
    }
}

/// The length of the inclusion proof of `index` in a tree of `size > index` leaves: the levels
/// where the paths to `index` and to the last leaf differ (`inner`), plus the left siblings
/// above them (`border`).
fn inclusion_len(index: u64, size: u64) -> usize {
    let inner = u64::BITS - (index ^ (size - 1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// Checks that `leaf` is the leaf at `index` of the tree of `size` leaves whose root is `root`,
/// with the algorithm of RFC 9162 section 2.1.3.2.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_len(index, size);
    let wrong_length = ProofError::WrongProofLength {
        len: proof.len(),
        expected,
    };
    if proof.len() > PROOF_LEN_MAX || proof.len() != expected {
        return Err(wrong_length);
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(wrong_length);
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
        return Err(wrong_length);
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The inclusion proof of one leaf built from the tree's leaves given one at a time, in order,
/// keeping O(log size) hashes where [`inclusion_proof`] needs every leaf at hand: for a proof
/// over a stream read from a file (an export), however long.
///
/// The proof is the roots of the subtrees beside the leaf's path (RFC 9162 `PATH(m, D[n])`);
/// each leaf but the proven one falls in exactly one of them, whose root a [`Frontier`] of its
/// own computes, while another computes the whole tree's root.
#[derive(Clone, Debug)]
pub struct InclusionProver {
    index: u64,
    size: u64,
    tree: Frontier,
    /// The subtrees of the proof, by their first leaf.
    parts: Vec<ProofPart>,
    /// The first part not yet complete.
    next: usize,
}

/// One hash of an [`InclusionProver`]'s proof: the subtree of leaves `start..end`.
#[derive(Clone, Debug)]
struct ProofPart {
    start: u64,
    end: u64,
    /// Its place in the proof (deepest first).
    slot: usize,
    frontier: Frontier,
}

impl InclusionProver {
    /// A prover of the leaf at `index` in the tree of `size` leaves.
    pub fn new(index: u64, size: u64) -> Result<InclusionProver, ProofError> {
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        // RFC 9162 `PATH`, top down: the sibling subtree at each split, the root's child first.
        let mut ranges = Vec::with_capacity(inclusion_len(index, size));
        let (mut lo, mut hi) = (0u64, size);
        while hi - lo > 1 {
            let k = split_u64(hi - lo);
            if index - lo < k {
                ranges.push((lo + k, hi));
                hi = lo + k;
            } else {
                ranges.push((lo, lo + k));
                lo += k;
            }
        }
        let count = ranges.len();
        let mut parts: Vec<ProofPart> = ranges
            .into_iter()
            .enumerate()
            .map(|(i, (start, end))| ProofPart {
                start,
                end,
                slot: count - 1 - i,
                frontier: Frontier::new(),
            })
            .collect();
        parts.sort_by_key(|p| p.start);
        Ok(InclusionProver {
            index,
            size,
            tree: Frontier::new(),
            parts,
            next: 0,
        })
    }

    /// Leaves given so far.
    pub fn leaves(&self) -> u64 {
        self.tree.size()
    }

    /// Gives the tree's next leaf; refused past its size.
    pub fn push(&mut self, leaf: Hash) -> Result<(), ProofError> {
        let at = self.tree.size();
        if at >= self.size {
            return Err(ProofError::SizeOutOfRange {
                size: at + 1,
                limit: self.size,
            });
        }
        self.tree.push(leaf);
        if at == self.index {
            return Ok(());
        }
        while self.parts.get(self.next).is_some_and(|p| p.end <= at) {
            self.next += 1;
        }
        // The parts and the proven leaf cover the tree, so the next part holds `at`.
        if let Some(part) = self.parts.get_mut(self.next)
            && part.start <= at
        {
            part.frontier.push(leaf);
        }
        Ok(())
    }

    /// The proof, deepest hash first as [`inclusion_proof`] orders it, and the tree's root;
    /// refused before every leaf of the tree was given.
    pub fn finish(self) -> Result<(Vec<Hash>, Hash), ProofError> {
        if self.tree.size() < self.size {
            return Err(ProofError::SizeOutOfRange {
                size: self.size,
                limit: self.tree.size(),
            });
        }
        let mut proof = vec![[0u8; 32]; self.parts.len()];
        for part in &self.parts {
            proof[part.slot] = part.frontier.root();
        }
        Ok((proof, self.tree.root()))
    }
}

/// The largest power of two below `n >= 2` ([`split`] for tree sizes that may not fit a usize).
fn split_u64(n: u64) -> u64 {
    1 << (u64::BITS - 1 - n.saturating_sub(1).leading_zeros())
}

/// The consistency proof between the tree of the first `old_size` `leaves` and the tree of the
/// first `new_size` (RFC 9162 section 2.1.4.1).
///
/// The proof is empty when `old_size` is 0 (every tree extends the empty tree; the verifier
/// then only checks that the old root is the empty tree's) or equals `new_size` (the verifier
/// then checks that the roots are equal), as RFC 9162's `SUBPROOF(m, D[m], true)` is.
pub fn consistency_proof(
    leaves: &[Hash],
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, ProofError> {
    let tree = prefix(leaves, new_size)?;
    if old_size > new_size {
        return Err(ProofError::SizeOutOfRange {
            size: old_size,
            limit: new_size,
        });
    }
    let mut proof = Vec::with_capacity(consistency_len(old_size, new_size));
    if old_size != 0 {
        // `old_size <= new_size <= leaves.len()`, so it fits a usize.
        let m = usize::try_from(old_size).map_err(|_| ProofError::SizeOutOfRange {
            size: old_size,
            limit: new_size,
        })?;
        subproof(m, tree, true, &mut proof);
    }
    Ok(proof)
}

/// RFC 9162 `SUBPROOF(m, D[n], b)`, appended to `out` deepest first.
fn subproof(m: usize, tree: &[Hash], whole: bool, out: &mut Vec<Hash>) {
    if m == tree.len() {
        if !whole {
            out.push(root(tree));
        }
        return;
    }
    let (left, right) = tree.split_at(split(tree.len()));
    if m <= left.len() {
        subproof(m, left, whole, out);
        out.push(root(right));
    } else {
        subproof(m - left.len(), right, false, out);
        out.push(root(left));
    }
}

/// The length of the consistency proof from `old_size` to `new_size` leaves: the inclusion
/// proof of the old tree's last leaf in the new tree, less the levels inside the old tree's
/// largest complete subtree on its right edge, plus that subtree's root unless it is the whole
/// old tree.
fn consistency_len(old_size: u64, new_size: u64) -> usize {
    if old_size == 0 || old_size >= new_size {
        return 0;
    }
    let path = inclusion_len(old_size - 1, new_size);
    let shift = old_size.trailing_zeros() as usize;
    let seed = usize::from(!old_size.is_power_of_two());
    path.saturating_sub(shift) + seed
}

/// Checks that the tree of `old_size` leaves with root `old_root` is a prefix of the tree of
/// `new_size` leaves with root `new_root`, with the algorithm of RFC 9162 section 2.1.4.2.
///
/// For the empty proofs of [`consistency_proof`]: with `old_size` 0, `old_root` must be the
/// empty tree's; with `old_size == new_size`, the roots must be equal.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::SizeOutOfRange {
            size: old_size,
            limit: new_size,
        });
    }
    let expected = consistency_len(old_size, new_size);
    let wrong_length = ProofError::WrongProofLength {
        len: proof.len(),
        expected,
    };
    if proof.len() > PROOF_LEN_MAX || proof.len() != expected {
        return Err(wrong_length);
    }
    if old_size == 0 || old_size == new_size {
        let old_ok = old_size != 0 || *old_root == empty_root();
        let same_ok = old_size != new_size || old_root == new_root;
        return if old_ok && same_ok {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    // Step 2: when the old tree is complete, its root starts the path.
    let (seed, path) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (first, rest),
            None => return Err(wrong_length),
        }
    };
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*seed, *seed);
    for c in path {
        if sn == 0 {
            return Err(wrong_length);
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
        return Err(wrong_length);
    }
    if fr != *old_root || sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The tree of RFC 6962's reference test data (certificate-transparency's `merkle_test`):
    /// leaves `""`, `00`, `10`, `2021`, `3031`, `40414243`, `50…57`, `60…6f`.
    fn reference_leaves() -> Vec<Hash> {
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
        .map(|h| leaf_hash(&hex::decode(h).expect("hex")))
        .collect()
    }

    fn h(text: &str) -> Hash {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).expect("64 hex digits");
        out
    }

    fn flipped(hash: &Hash, bit: usize) -> Hash {
        let mut out = *hash;
        out[(bit / 8) % 32] ^= 1 << (bit % 8);
        out
    }

    /// The RFC's `MTH` written out again, as plainly as possible: split at the largest power
    /// of two below `n`, hash `0x01 || left || right`.
    fn naive_root(leaves: &[Hash]) -> Hash {
        if leaves.is_empty() {
            return digest_of(&[]);
        }
        if leaves.len() == 1 {
            return leaves[0];
        }
        let mut k = 1;
        while k * 2 < leaves.len() {
            k *= 2;
        }
        let mut node = vec![0x01];
        node.extend_from_slice(&naive_root(&leaves[..k]));
        node.extend_from_slice(&naive_root(&leaves[k..]));
        digest_of(&node)
    }

    fn digest_of(bytes: &[u8]) -> Hash {
        let mut out = [0u8; 32];
        out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
        out
    }

    fn small_leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&[i as u8])).collect()
    }

    fn frontier_of(leaves: &[Hash]) -> Frontier {
        let mut frontier = Frontier::new();
        for leaf in leaves {
            frontier.push(*leaf);
        }
        frontier
    }

    /// Proofs built from streamed leaves are those built from every leaf, for every leaf of
    /// every small tree, with the tree's root.
    #[test]
    fn streamed_inclusion_proofs_are_the_recursive_ones() {
        for size in 1..=70u64 {
            let leaves = small_leaves(size as usize);
            for index in 0..size {
                let mut prover = InclusionProver::new(index, size).expect("prover");
                for leaf in &leaves {
                    prover.push(*leaf).expect("leaf");
                }
                assert_eq!(prover.leaves(), size);
                let (proof, tree_root) = prover.finish().expect("proof");
                assert_eq!(
                    proof,
                    inclusion_proof(&leaves, index, size).expect("proof"),
                    "{index} in {size}"
                );
                assert_eq!(tree_root, root(&leaves));
                verify_inclusion(&leaves[index as usize], index, size, &proof, &tree_root)
                    .expect("verifies");
            }
        }
        let leaves = reference_leaves();
        let mut prover = InclusionProver::new(5, 8).expect("prover");
        for leaf in &leaves {
            prover.push(*leaf).expect("leaf");
        }
        let (proof, _) = prover.finish().expect("proof");
        assert_eq!(
            proof,
            [
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ]
        );
    }

    #[test]
    fn a_streamed_proof_refuses_a_leaf_out_of_range_or_too_many_or_too_few() {
        assert_eq!(
            InclusionProver::new(3, 3).map(|_| ()),
            Err(ProofError::IndexOutOfRange { index: 3, size: 3 })
        );
        assert!(InclusionProver::new(u64::MAX, u64::MAX).is_err());
        // The largest tree there can be: no overflow in the split.
        assert_eq!(
            InclusionProver::new(u64::MAX - 1, u64::MAX)
                .expect("prover")
                .parts
                .len(),
            inclusion_len(u64::MAX - 1, u64::MAX)
        );
        let mut prover = InclusionProver::new(0, 2).expect("prover");
        prover.push(leaf_hash(b"a")).expect("leaf");
        let short = prover.clone().finish();
        assert_eq!(short, Err(ProofError::SizeOutOfRange { size: 2, limit: 1 }));
        prover.push(leaf_hash(b"b")).expect("leaf");
        assert_eq!(
            prover.push(leaf_hash(b"c")),
            Err(ProofError::SizeOutOfRange { size: 3, limit: 2 })
        );
        let (proof, tree_root) = prover.finish().expect("proof");
        assert_eq!(proof, vec![leaf_hash(b"b")]);
        assert_eq!(tree_root, node_hash(&leaf_hash(b"a"), &leaf_hash(b"b")));
    }

    #[test]
    fn roots_of_the_rfc_6962_reference_tree() {
        let leaves = reference_leaves();
        let check = |size: usize, expected: &str| {
            assert_eq!(root(&leaves[..size]), h(expected), "size {size}");
            assert_eq!(
                frontier_of(&leaves[..size]).root(),
                h(expected),
                "size {size}"
            );
        };
        check(
            1,
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        );
        check(
            2,
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        );
        check(
            3,
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        );
        check(
            4,
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        );
        check(
            5,
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        );
        check(
            6,
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        );
        check(
            7,
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        );
        check(
            8,
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        );
        assert_eq!(
            root(&[]),
            h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
    }

    #[test]
    fn proofs_of_the_rfc_6962_reference_tree() {
        let leaves = reference_leaves();
        let check_inclusion = |index: u64, size: u64, expected: &[&str]| {
            let expected: Vec<Hash> = expected.iter().map(|e| h(e)).collect();
            let proof = inclusion_proof(&leaves, index, size).expect("proof");
            assert_eq!(proof, expected, "inclusion of {index} in {size}");
            let tree_root = root(&leaves[..size as usize]);
            verify_inclusion(&leaves[index as usize], index, size, &proof, &tree_root)
                .expect("verifies");
        };
        check_inclusion(0, 1, &[]);
        check_inclusion(
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        );
        check_inclusion(
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        );
        check_inclusion(
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        );
        check_inclusion(
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        );

        let check_consistency = |old: u64, new: u64, expected: &[&str]| {
            let expected: Vec<Hash> = expected.iter().map(|e| h(e)).collect();
            let proof = consistency_proof(&leaves, old, new).expect("proof");
            assert_eq!(proof, expected, "consistency of {old} and {new}");
            let old_root = root(&leaves[..old as usize]);
            let new_root = root(&leaves[..new as usize]);
            verify_consistency(old, new, &old_root, &new_root, &proof).expect("verifies");
        };
        check_consistency(0, 8, &[]);
        check_consistency(8, 8, &[]);
        check_consistency(
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        );
        check_consistency(
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        );
        check_consistency(
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        );
        check_consistency(
            3,
            7,
            &[
                "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
                "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
                "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
                "837dbb152e9b079010717e84e865da4ebc0fa198a806d59d31bf15accef22d0e",
            ],
        );
    }

    #[test]
    fn root_and_frontier_match_a_naive_reference_at_every_size() {
        let leaves = small_leaves(300);
        let mut frontier = Frontier::new();
        for size in 0..=leaves.len() {
            let expected = naive_root(&leaves[..size]);
            assert_eq!(root(&leaves[..size]), expected, "size {size}");
            assert_eq!(frontier.root(), expected, "frontier at size {size}");
            if let Some(leaf) = leaves.get(size) {
                frontier.push(*leaf);
            }
        }
    }

    #[test]
    fn every_consistency_proof_of_small_trees_verifies() {
        let leaves = small_leaves(64);
        let roots: Vec<Hash> = (0..=leaves.len()).map(|n| root(&leaves[..n])).collect();
        for new in 0..=leaves.len() as u64 {
            for old in 0..=new {
                let proof = consistency_proof(&leaves, old, new).expect("proof");
                let (old_root, new_root) = (&roots[old as usize], &roots[new as usize]);
                assert_eq!(
                    verify_consistency(old, new, old_root, new_root, &proof),
                    Ok(()),
                    "{old} to {new}"
                );
            }
        }
    }

    /// Impossible sizes and indices, and proofs of the wrong length: each an error, none a
    /// panic.
    #[test]
    fn bad_sizes_indices_and_lengths_are_errors() {
        let leaves = small_leaves(5);
        let r = root(&leaves);
        let any = leaf_hash(b"any");
        let empty = empty_root();
        let long = vec![any; PROOF_LEN_MAX + 1];
        let full = vec![any; PROOF_LEN_MAX];
        use ProofError::*;
        let check = |got: Result<(), ProofError>, expected: Result<(), ProofError>| {
            assert_eq!(got, expected);
        };
        let size_err = |size, limit| Err(SizeOutOfRange { size, limit });
        check(inclusion_proof(&leaves, 0, 6).map(drop), size_err(6, 5));
        check(
            inclusion_proof(&leaves, 0, u64::MAX).map(drop),
            size_err(u64::MAX, 5),
        );
        check(
            inclusion_proof(&leaves, 5, 5).map(drop),
            Err(IndexOutOfRange { index: 5, size: 5 }),
        );
        check(
            inclusion_proof(&[], 0, 0).map(drop),
            Err(IndexOutOfRange { index: 0, size: 0 }),
        );
        check(consistency_proof(&leaves, 3, 6).map(drop), size_err(6, 5));
        check(consistency_proof(&leaves, 4, 3).map(drop), size_err(4, 3));
        check(
            consistency_proof(&leaves, u64::MAX, 5).map(drop),
            size_err(u64::MAX, 5),
        );

        check(
            verify_inclusion(&any, 0, 0, &[], &r),
            Err(IndexOutOfRange { index: 0, size: 0 }),
        );
        check(
            verify_inclusion(&any, u64::MAX, u64::MAX, &[], &r),
            Err(IndexOutOfRange {
                index: u64::MAX,
                size: u64::MAX,
            }),
        );
        check(
            verify_inclusion(&any, 0, u64::MAX, &long, &r),
            Err(WrongProofLength {
                len: 65,
                expected: 64,
            }),
        );
        check(
            verify_inclusion(&any, 0, u64::MAX, &full, &r),
            Err(RootMismatch),
        );
        check(
            verify_inclusion(&any, u64::MAX - 1, u64::MAX, &full[..63], &r),
            Err(RootMismatch),
        );
        check(
            verify_inclusion(&any, 1, 2, &[], &r),
            Err(WrongProofLength {
                len: 0,
                expected: 1,
            }),
        );
        check(verify_inclusion(&any, 0, 1, &[], &any), Ok(()));

        check(verify_consistency(0, 0, &empty, &empty, &[]), Ok(()));
        check(verify_consistency(0, 0, &empty, &r, &[]), Err(RootMismatch));
        check(verify_consistency(0, 5, &empty, &r, &[]), Ok(()));
        check(verify_consistency(0, 5, &r, &r, &[]), Err(RootMismatch));
        check(verify_consistency(5, 5, &r, &r, &[]), Ok(()));
        check(verify_consistency(5, 5, &r, &any, &[]), Err(RootMismatch));
        check(
            verify_consistency(5, 5, &r, &r, &[any]),
            Err(WrongProofLength {
                len: 1,
                expected: 0,
            }),
        );
        check(verify_consistency(6, 5, &r, &r, &[]), size_err(6, 5));
        check(
            verify_consistency(3, 5, &r, &r, &[]),
            Err(WrongProofLength {
                len: 0,
                expected: 4,
            }),
        );
        check(
            verify_consistency(1, u64::MAX, &r, &r, &long),
            Err(WrongProofLength {
                len: 65,
                expected: 64,
            }),
        );
        check(
            verify_consistency(1, u64::MAX, &any, &r, &full),
            Err(RootMismatch),
        );
        check(
            verify_consistency(u64::MAX - 1, u64::MAX, &any, &r, &full[..2]),
            Err(WrongProofLength {
                len: 2,
                expected: 64,
            }),
        );
        check(
            verify_consistency(u64::MAX - 1, u64::MAX, &any, &r, &full),
            Err(RootMismatch),
        );
        check(verify_consistency(u64::MAX, u64::MAX, &r, &r, &[]), Ok(()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Every leaf's proof verifies; a flipped bit in the leaf, the proof or the root, or
        /// another index, makes it fail.
        #[test]
        fn inclusion_proofs_verify_and_tampering_fails(size in 1usize..300, bit in 0usize..256) {
            let leaves = small_leaves(size);
            let tree_root = root(&leaves);
            prop_assert_eq!(frontier_of(&leaves).root(), tree_root);
            let n = size as u64;
            for (i, leaf) in leaves.iter().enumerate() {
                let index = i as u64;
                let proof = inclusion_proof(&leaves, index, n).expect("proof");
                prop_assert!(proof.len() <= PROOF_LEN_MAX);
                prop_assert_eq!(verify_inclusion(leaf, index, n, &proof, &tree_root), Ok(()));
                let flipped_leaf = flipped(leaf, bit);
                prop_assert!(verify_inclusion(&flipped_leaf, index, n, &proof, &tree_root).is_err());
                prop_assert!(verify_inclusion(leaf, index, n, &proof, &flipped(&tree_root, bit)).is_err());
                if !proof.is_empty() {
                    let mut bad = proof.clone();
                    let at = bit % bad.len();
                    bad[at] = flipped(&bad[at], bit);
                    prop_assert!(verify_inclusion(leaf, index, n, &bad, &tree_root).is_err());
                    let mut short = proof.clone();
                    short.pop();
                    prop_assert!(verify_inclusion(leaf, index, n, &short, &tree_root).is_err());
                }
                if size > 1 {
                    let other = (index + 1) % n;
                    prop_assert!(verify_inclusion(leaf, other, n, &proof, &tree_root).is_err());
                }
            }
        }

        /// Streamed proofs of larger trees (distinct leaves) are the recursive ones.
        #[test]
        fn streamed_inclusion_proofs_of_larger_trees(size in 1u64..5000, at in any::<u64>()) {
            let leaves: Vec<Hash> = (0..size).map(|i| leaf_hash(&i.to_le_bytes())).collect();
            let index = at % size;
            let mut prover = InclusionProver::new(index, size).expect("prover");
            for leaf in &leaves {
                prover.push(*leaf).expect("leaf");
            }
            let (proof, tree_root) = prover.finish().expect("proof");
            prop_assert_eq!(proof, inclusion_proof(&leaves, index, size).expect("proof"));
            prop_assert_eq!(tree_root, root(&leaves));
        }

        /// Every older size's proof verifies against the newest; a flipped bit in the proof or
        /// either root makes it fail (but for the empty old tree, whose proof says nothing
        /// about the new root).
        #[test]
        fn consistency_proofs_verify_and_tampering_fails(new in 1usize..300, bit in 0usize..256) {
            let leaves = small_leaves(new);
            let new_root = root(&leaves);
            let n = new as u64;
            for old in 0..=n {
                let old_root = root(&leaves[..old as usize]);
                let proof = consistency_proof(&leaves, old, n).expect("proof");
                prop_assert!(proof.len() <= PROOF_LEN_MAX);
                prop_assert_eq!(verify_consistency(old, n, &old_root, &new_root, &proof), Ok(()));
                let bad_old = flipped(&old_root, bit);
                prop_assert!(verify_consistency(old, n, &bad_old, &new_root, &proof).is_err());
                if old != 0 {
                    let bad_new = flipped(&new_root, bit);
                    prop_assert!(verify_consistency(old, n, &old_root, &bad_new, &proof).is_err());
                }
                if !proof.is_empty() {
                    let mut bad = proof.clone();
                    let at = bit % bad.len();
                    bad[at] = flipped(&bad[at], bit);
                    prop_assert!(verify_consistency(old, n, &old_root, &new_root, &bad).is_err());
                }
                if old != 0 && old != n {
                    let other = root(&leaves[..old as usize - 1]);
                    prop_assert!(verify_consistency(old, n, &other, &new_root, &proof).is_err());
                }
            }
        }

        /// Random sizes, indices and proofs, up to the largest: an answer, never a panic.
        #[test]
        fn arbitrary_input_never_panics(
            a in any::<u64>(),
            b in any::<u64>(),
            len in 0usize..70,
            seed in any::<u8>(),
        ) {
            let proof: Vec<Hash> = (0..len).map(|i| leaf_hash(&[seed, i as u8])).collect();
            let x = leaf_hash(&[seed]);
            let _ = verify_inclusion(&x, a, b, &proof, &x);
            let _ = verify_inclusion(&x, a.min(b.saturating_sub(1)), b, &proof, &x);
            let _ = verify_consistency(a.min(b), b, &x, &x, &proof);
            let _ = verify_consistency(a, b, &x, &x, &proof);
            let leaves = small_leaves(len);
            let _ = inclusion_proof(&leaves, a % 80, b % 80);
            let _ = consistency_proof(&leaves, a % 80, b % 80);
        }
    }
}
