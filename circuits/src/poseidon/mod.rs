//! Poseidon over BN254 Fr, compatible with circomlib's `Poseidon(n)` template and
//! circomlibjs' `poseidon`, so that other ecosystems can recompute zkfabric's digests.
//!
//! [`hash`] takes 1 to 16 inputs and uses the permutation of width `inputs + 1`.
//! [`chain`] extends it to any length: the first block hashes up to 16 inputs, and each
//! further block hashes the previous digest followed by up to 15 new inputs. The
//! [`gadget`] module computes the same functions inside a constraint system.

pub mod gadget;
mod params;

use ark_ff::Field;

use crate::Fr;
use params::{params, Params, MAX_WIDTH};

/// Most inputs one [`hash`] call takes (circomlib's widest permutation, t = 17).
pub const MAX_INPUTS: usize = MAX_WIDTH - 1;

/// circomlib's `Poseidon(n)` of `inputs` (n = 1..=16).
///
/// # Panics
/// If `inputs` is empty or longer than [`MAX_INPUTS`]: the callers in this crate always
/// pass a fixed, valid length.
pub fn hash(inputs: &[Fr]) -> Fr {
    assert!(
        (1..=MAX_INPUTS).contains(&inputs.len()),
        "Poseidon takes 1..={MAX_INPUTS} inputs, got {}",
        inputs.len()
    );
    let mut state = Vec::with_capacity(inputs.len() + 1);
    state.push(Fr::from(0u8));
    state.extend_from_slice(inputs);
    permute(&mut state, params(inputs.len() + 1));
    state[0]
}

/// The digest of any number of inputs (at least one): blocks of the widest permutation,
/// each after the first starting with the previous block's digest.
pub fn chain(inputs: &[Fr]) -> Fr {
    let mut blocks = chain_blocks(inputs.len()).into_iter();
    let first = blocks.next().expect("a chain has at least one block");
    let mut digest = hash(&inputs[first]);
    let mut block = Vec::with_capacity(MAX_INPUTS);
    for range in blocks {
        block.clear();
        block.push(digest);
        block.extend_from_slice(&inputs[range]);
        digest = hash(&block);
    }
    digest
}

/// The input ranges of each block of a chain over `len` inputs; shared by the native
/// chain and the gadget so that both split inputs the same way.
pub(crate) fn chain_blocks(len: usize) -> Vec<std::ops::Range<usize>> {
    assert!(len > 0, "a Poseidon chain needs at least one input");
    let first = 0..len.min(MAX_INPUTS);
    let mut start = first.end;
    let mut blocks = Vec::from([first]);
    while start < len {
        let end = (start + MAX_INPUTS - 1).min(len);
        blocks.push(start..end);
        start = end;
    }
    blocks
}

/// Number of R1CS constraints of one permutation of `width` cells: three per S-box.
pub fn permutation_constraints(width: usize) -> usize {
    let p = params(width);
    3 * (params::FULL_ROUNDS * width + p.partial_rounds)
}

fn permute(state: &mut [Fr], p: &Params) {
    let width = state.len();
    let mut next = vec![Fr::from(0u8); width];
    for round in 0..p.rounds() {
        for (cell, constant) in state.iter_mut().zip(&p.ark[round]) {
            *cell += constant;
        }
        let sboxed = if p.is_full_round(round) { width } else { 1 };
        for cell in &mut state[..sboxed] {
            *cell = sbox(*cell);
        }
        for (out, row) in next.iter_mut().zip(&p.mds) {
            *out = row.iter().zip(state.iter()).map(|(m, s)| *m * s).sum();
        }
        state.copy_from_slice(&next);
    }
}

fn sbox(x: Fr) -> Fr {
    let x2 = x.square();
    x2.square() * x
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_ff::{BigInteger, PrimeField};

    fn hex(x: Fr) -> String {
        let bytes = x.into_bigint().to_bytes_be();
        format!(
            "0x{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    }

    /// circomlibjs 0.1.7: poseidon([1, ..., t-1]) for every width t = 2..=17.
    #[test]
    fn matches_circomlib_for_every_width() {
        let vectors = include_str!("../../tests/fixtures/poseidon_circomlib.txt");
        let mut checked = 0;
        for line in vectors
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        {
            let (width, expected) = line.split_once(' ').expect("`t 0xHASH` lines");
            let width: u64 = width.parse().expect("width");
            let inputs: Vec<Fr> = (1..width).map(Fr::from).collect();
            assert_eq!(hex(hash(&inputs)), expected.trim(), "width {width}");
            checked += 1;
        }
        assert_eq!(checked, 16);
    }

    #[test]
    fn design_vectors() {
        assert_eq!(
            hex(hash(&[Fr::from(1u8), Fr::from(2u8)])),
            "0x115cc0f5e7d690413df64c6b9662e9cf2a3617f2743245519e19607a4417189a"
        );
        let four: Vec<Fr> = (1u8..=4).map(Fr::from).collect();
        assert_eq!(
            hex(hash(&four)),
            "0x299c867db6c1fdd79dcefa40e4510b9837e60ebb1ce0663dbaa525df65250465"
        );
    }

    #[test]
    fn chain_is_hash_for_short_inputs_and_blocks_cover_everything() {
        let inputs: Vec<Fr> = (0u64..100).map(Fr::from).collect();
        assert_eq!(chain(&inputs[..16]), hash(&inputs[..16]));
        for len in [1, 16, 17, 31, 32, 100] {
            let blocks = chain_blocks(len);
            assert_eq!(blocks.first().unwrap().start, 0);
            assert_eq!(blocks.last().unwrap().end, len);
            assert!(blocks.windows(2).all(|w| w[0].end == w[1].start));
        }
        let manual = hash(&[hash(&inputs[..16]), inputs[16]]);
        assert_eq!(chain(&inputs[..17]), manual);
    }
}
