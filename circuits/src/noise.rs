//! Binomial noise whose coins neither the node nor the researcher chooses.
//!
//! A noisy value gets `B = Σ coins`, `B ~ Binomial(n, 1/2)`. Coin `i` of the value at
//! position `p` (two per group: the count at `2g`, the sum at `2g + 1`) is
//! `private_i XOR public_i`:
//! - private bits: the low [`BITS_PER_WORD`] bits of `Poseidon(PRIVATE_COINS_TAG, secret,
//!   query, p, word)`, a PRF of the node's noise secret, whose commitment
//!   ([`secret_commitment`]) the epoch's manifest published before any query;
//! - public bits: the same of `Poseidon(PUBLIC_COINS_TAG, nonce, query, p, word)`, from
//!   the nonce the researcher sent with the query.
//!
//! `query` is the canonical query's hash (it covers epsilon and delta). The node fixed its
//! secret before it saw the nonce, so it cannot steer the noise; the researcher, lacking
//! the secret, cannot remove it. Each word is decomposed canonically (its bits must spell
//! a number below the field's modulus), so the prover has no second decomposition to
//! pick; only the low 200 of its 254 bits are used, whose joint distribution for a
//! uniform field element is within 2^-53 of uniform.
//!
//! [`noise`] is the native twin of [`noise_gadget`].

use ark_ff::{BigInteger, PrimeField};
use ark_r1cs_std::{
    convert::ToBitsGadget,
    eq::EqGadget,
    fields::{fp::FpVar, FieldVar},
};
use ark_relations::gr1cs::SynthesisError;

use crate::{poseidon, Fr};

/// Domain tag of the noise secret's commitment.
pub const SECRET_TAG: u64 = 0x7a6b_6610;
/// Domain tag of the private (secret-keyed) coin words.
pub const PRIVATE_COINS_TAG: u64 = 0x7a6b_6611;
/// Domain tag of the public (nonce-keyed) coin words.
pub const PUBLIC_COINS_TAG: u64 = 0x7a6b_6612;
/// Coins taken from each Poseidon output.
pub const BITS_PER_WORD: usize = 200;
/// Most coins a value may draw (about 1M: beyond this epsilon is too small to serve).
pub const MAX_COINS: u32 = 1 << 20;

/// What the noise of a query is drawn from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoiseSeed {
    /// The node's secret for the epoch (a witness; only its commitment is public).
    pub secret: Fr,
    /// The canonical query's hash.
    pub query: Fr,
    /// The researcher's nonce.
    pub nonce: Fr,
}

/// The commitment to a noise secret that a manifest publishes.
pub fn secret_commitment(secret: Fr) -> Fr {
    poseidon::hash(&[Fr::from(SECRET_TAG), secret])
}

/// The coin words of one value, natively.
fn word(tag: u64, key: Fr, query: Fr, position: u64, index: usize) -> Fr {
    poseidon::hash(&[
        Fr::from(tag),
        key,
        query,
        Fr::from(position),
        Fr::from(index as u64),
    ])
}

/// Native twin of [`noise_gadget`]: `B`, the number of heads among the `coins` coins of
/// the value at `position`.
pub fn noise(seed: &NoiseSeed, position: u64, coins: u32) -> u32 {
    let mut heads = 0;
    for index in 0..(coins as usize).div_ceil(BITS_PER_WORD) {
        let private = word(PRIVATE_COINS_TAG, seed.secret, seed.query, position, index);
        let public = word(PUBLIC_COINS_TAG, seed.nonce, seed.query, position, index);
        let (private, public) = (
            private.into_bigint().to_bits_le(),
            public.into_bigint().to_bits_le(),
        );
        let take = BITS_PER_WORD.min(coins as usize - index * BITS_PER_WORD);
        heads += (0..take).filter(|&i| private[i] != public[i]).count() as u32;
    }
    heads
}

/// In-circuit twin of [`noise`]: the heads among `coins` coins of the value at
/// `position`, from the witnessed `secret` and the public `query` and `nonce`. Per word:
/// two Poseidon hashes and two canonical decompositions; per coin, one constraint.
pub fn noise_gadget(
    secret: &FpVar<Fr>,
    query: &FpVar<Fr>,
    nonce: &FpVar<Fr>,
    position: u64,
    coins: u32,
) -> Result<FpVar<Fr>, SynthesisError> {
    let mut heads = FpVar::zero();
    for index in 0..(coins as usize).div_ceil(BITS_PER_WORD) {
        let word = |tag: u64, key: &FpVar<Fr>| {
            poseidon::gadget::hash(&[
                FpVar::constant(Fr::from(tag)),
                key.clone(),
                query.clone(),
                FpVar::constant(Fr::from(position)),
                FpVar::constant(Fr::from(index as u64)),
            ])?
            // Canonical: the bits must spell a number below the modulus.
            .to_bits_le()
        };
        let private = word(PRIVATE_COINS_TAG, secret)?;
        let public = word(PUBLIC_COINS_TAG, nonce)?;
        let take = BITS_PER_WORD.min(coins as usize - index * BITS_PER_WORD);
        for (a, b) in private.iter().zip(&public).take(take) {
            // a XOR b = a + b - 2ab, one constraint for the product.
            let (a, b) = (FpVar::from(a.clone()), FpVar::from(b.clone()));
            heads += &a + &b - (&a * &b).double()?;
        }
    }
    Ok(heads)
}

/// Enforces that `secret` opens `commitment`.
pub fn open_secret(secret: &FpVar<Fr>, commitment: &FpVar<Fr>) -> Result<(), SynthesisError> {
    poseidon::gadget::hash(&[FpVar::constant(Fr::from(SECRET_TAG)), secret.clone()])?
        .enforce_equal(commitment)
}
