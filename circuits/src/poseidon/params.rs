//! circomlib's Poseidon parameters for BN254 Fr, widths 2 to 17.

use std::sync::OnceLock;

use ark_crypto_primitives::sponge::poseidon::find_poseidon_ark_and_mds;
use ark_ff::PrimeField;

use crate::Fr;

/// Full rounds of every width: four before the partial rounds and four after.
pub(crate) const FULL_ROUNDS: usize = 8;

/// circomlib's partial-round counts for widths t = 2..=17.
const PARTIAL_ROUNDS: [usize; 16] = [
    56, 57, 56, 60, 60, 63, 64, 63, 60, 66, 60, 65, 70, 60, 64, 68,
];

/// Smallest and largest permutation width (inputs + 1).
pub(crate) const MIN_WIDTH: usize = 2;
pub(crate) const MAX_WIDTH: usize = 17;

/// Round constants and MDS matrix of one width.
pub(crate) struct Params {
    /// `ark[round][cell]`, added at the start of each round.
    pub ark: Vec<Vec<Fr>>,
    /// The MDS matrix, `mds[row][column]`.
    pub mds: Vec<Vec<Fr>>,
    pub partial_rounds: usize,
}

impl Params {
    /// Whether `round` applies the S-box to every cell (else only to cell 0).
    pub fn is_full_round(&self, round: usize) -> bool {
        round < FULL_ROUNDS / 2 || round >= FULL_ROUNDS / 2 + self.partial_rounds
    }

    pub fn rounds(&self) -> usize {
        FULL_ROUNDS + self.partial_rounds
    }
}

/// The parameters of permutation width `width` (2..=17), derived once from the Grain LFSR
/// exactly as circomlib derived its constants.
pub(crate) fn params(width: usize) -> &'static Params {
    assert!(
        (MIN_WIDTH..=MAX_WIDTH).contains(&width),
        "Poseidon width {width} outside {MIN_WIDTH}..={MAX_WIDTH}"
    );
    static TABLE: [OnceLock<Params>; MAX_WIDTH - MIN_WIDTH + 1] =
        [const { OnceLock::new() }; MAX_WIDTH - MIN_WIDTH + 1];
    TABLE[width - MIN_WIDTH].get_or_init(|| {
        let partial_rounds = PARTIAL_ROUNDS[width - MIN_WIDTH];
        let (ark, mds) = find_poseidon_ark_and_mds::<Fr>(
            u64::from(Fr::MODULUS_BIT_SIZE),
            width - 1,
            FULL_ROUNDS as u64,
            partial_rounds as u64,
            0,
        );
        Params {
            ark,
            mds,
            partial_rounds,
        }
    })
}
