//! Groth16 over BN254 for every zkfabric circuit: setup, proving, verification, batch
//! verification, compressed (de)serialization and verifying-key fingerprints.
//!
//! Setup records the circuit's constraint matrices next to the proving key. Proving then
//! synthesizes in witness-only mode (no constraints are built, no linear combinations
//! inlined), checks the assignment against the cached matrices, and hands both to
//! ark-groth16's proving core. A false statement is refused with
//! [`CircuitError::Unsatisfied`] before any proof is made.
//!
//! Single-party [`setup`] knows the trapdoor and could forge proofs: it is for development.
//! Production keys come from a multi-party ceremony, and verifiers pin their
//! [`fingerprint`]s.

use ark_bn254::{Bn254, G1Affine, G1Projective};
use ark_ec::{pairing::Pairing, AffineRepr, CurveGroup, VariableBaseMSM};
use ark_ff::{UniformRand, Zero};
use ark_groth16::{
    r1cs_to_qap::{LibsnarkReduction, R1CSToQAP},
    Groth16,
};
use ark_relations::{
    gr1cs::{
        ConstraintSynthesizer, ConstraintSystem, OptimizationGoal, SynthesisMode,
        R1CS_PREDICATE_LABEL,
    },
    utils::matrix::Matrix,
};
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use ark_std::rand::{CryptoRng, Rng, RngCore};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::{circom::CircomReduction, CircuitError, Fr};

/// A Groth16 proof (two G1 points and one G2 point; 128 bytes compressed).
pub type Proof = ark_groth16::Proof<Bn254>;
/// A Groth16 verifying key.
pub type VerifyingKey = ark_groth16::VerifyingKey<Bn254>;

/// A circuit family whose constraint system, and so whose keys, a shape fixes.
pub trait Circuit: ConstraintSynthesizer<Fr> + Clone {
    /// What fixes the constraint system.
    type Shape;
    /// A placeholder of `shape` with an all-zero witness, for key generation.
    fn blank(shape: &Self::Shape) -> Result<Self, CircuitError>;
    /// The public inputs this circuit proves, in the order it allocates them.
    fn public_inputs(&self) -> Result<Vec<Fr>, CircuitError>;
}

/// The R1CS matrices of a circuit shape and its variable counts.
#[derive(Clone, Debug)]
pub struct ConstraintMatrices {
    /// A, B and C, as ark-groth16's proving core takes them.
    r1cs: Vec<Matrix<Fr>>,
    /// Instance variables, the constant `1` included.
    pub num_instance_variables: usize,
    /// Witness variables.
    pub num_witness_variables: usize,
    /// Constraints.
    pub num_constraints: usize,
}

impl ConstraintMatrices {
    /// Synthesizes `circuit` in setup mode, exactly as ark-groth16's generator does, and
    /// keeps its matrices.
    pub fn of<C: ConstraintSynthesizer<Fr>>(circuit: C) -> Result<Self, CircuitError> {
        let cs = ConstraintSystem::new_ref();
        cs.set_optimization_goal(OptimizationGoal::Constraints);
        cs.set_mode(SynthesisMode::Setup);
        circuit.generate_constraints(cs.clone())?;
        cs.finalize();
        let mut matrices = cs.to_matrices()?;
        let r1cs = matrices
            .remove(R1CS_PREDICATE_LABEL)
            .filter(|m| m.len() == 3)
            .ok_or_else(|| CircuitError::InvalidShape("circuit has no R1CS matrices".into()))?;
        Ok(Self {
            r1cs,
            num_instance_variables: cs.num_instance_variables(),
            num_witness_variables: cs.num_witness_variables(),
            num_constraints: cs.num_constraints(),
        })
    }

    /// Checks `A·z ∘ B·z = C·z` for a full assignment `z = [1, inputs, witnesses]`,
    /// naming the first violated constraint.
    pub fn check(&self, z: &[Fr]) -> Result<(), CircuitError> {
        let expected = self.num_instance_variables + self.num_witness_variables;
        if z.len() != expected {
            return Err(CircuitError::KeyMismatch(format!(
                "assignment has {} variables, the shape {expected}",
                z.len()
            )));
        }
        let eval = |row: &[(Fr, usize)]| row.iter().map(|(coeff, i)| *coeff * z[*i]).sum::<Fr>();
        let [a, b, c] = [&self.r1cs[0], &self.r1cs[1], &self.r1cs[2]];
        let violated = (0..self.num_constraints)
            .into_par_iter()
            .find_first(|&i| eval(&a[i]) * eval(&b[i]) != eval(&c[i]));
        match violated {
            Some(i) => Err(CircuitError::Unsatisfied(i)),
            None => Ok(()),
        }
    }
}

impl ConstraintMatrices {
    /// The matrices A, B and C.
    pub fn r1cs(&self) -> &[Matrix<Fr>] {
        &self.r1cs
    }
}

/// Which R1CS-to-QAP reduction a proving key was made for, and so which witness map a
/// prover must use with it. Verification is the same for both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// ark-groth16's (libsnark's): the keys of this crate's development [`setup`].
    Libsnark,
    /// snarkjs' (evaluations at the odd 2n-th roots of unity): keys from a circom/snarkjs
    /// ceremony, see [`crate::circom`].
    Circom,
}

/// What [`ProvingKey::to_bytes`] writes before the key, with one byte naming the reduction;
/// files without it are development keys written before ceremony keys existed.
const KEY_MAGIC: &[u8; 7] = b"zkfpk1:";

/// A proving key together with its shape's constraint matrices and the reduction it was
/// made for.
#[derive(Clone, Debug)]
pub struct ProvingKey {
    key: ark_groth16::ProvingKey<Bn254>,
    matrices: ConstraintMatrices,
    reduction: Reduction,
}

impl ProvingKey {
    /// The verifying key that goes with this proving key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key.vk
    }

    /// The shape's constraint matrices.
    pub fn matrices(&self) -> &ConstraintMatrices {
        &self.matrices
    }

    /// The ark-groth16 proving key.
    pub fn groth16(&self) -> &ark_groth16::ProvingKey<Bn254> {
        &self.key
    }

    /// The reduction this key was made for.
    pub fn reduction(&self) -> Reduction {
        self.reduction
    }

    /// The reduction's tag and uncompressed bytes of the ark-groth16 proving key (the
    /// matrices are recomputed from the shape when loading). A proving key is the
    /// prover's own file, so it is stored for fast loading: decompressing and
    /// subgroup-checking its hundreds of thousands of points would take longer than a
    /// proof.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = KEY_MAGIC.to_vec();
        out.push(match self.reduction {
            Reduction::Libsnark => b'L',
            Reduction::Circom => b'C',
        });
        self.key
            .serialize_uncompressed(&mut out)
            .expect("serializing into a Vec cannot fail");
        out
    }

    /// Loads a proving key written by [`ProvingKey::to_bytes`] for `shape`, checking that
    /// the key was made for a constraint system of exactly that size. Points are not
    /// validated: a damaged key gives proofs that fail verification, never a proof that
    /// passes it wrongly.
    pub fn from_bytes<C: Circuit>(bytes: &[u8], shape: &C::Shape) -> Result<Self, CircuitError> {
        let (reduction, key_bytes) = match bytes.strip_prefix(KEY_MAGIC.as_slice()) {
            Some([b'L', rest @ ..]) => (Reduction::Libsnark, rest),
            Some([b'C', rest @ ..]) => (Reduction::Circom, rest),
            Some(_) => {
                return Err(CircuitError::KeyMismatch(
                    "the key names a reduction this version does not know".into(),
                ))
            }
            None => (Reduction::Libsnark, bytes),
        };
        let key = ark_groth16::ProvingKey::<Bn254>::deserialize_uncompressed_unchecked(key_bytes)?;
        Self::from_parts(key, ConstraintMatrices::of(C::blank(shape)?)?, reduction)
    }

    /// A key whose counts of variables and public inputs fit `matrices`.
    pub(crate) fn from_parts(
        key: ark_groth16::ProvingKey<Bn254>,
        matrices: ConstraintMatrices,
        reduction: Reduction,
    ) -> Result<Self, CircuitError> {
        let variables = matrices.num_instance_variables + matrices.num_witness_variables;
        if key.a_query.len() != variables
            || key.vk.gamma_abc_g1.len() != matrices.num_instance_variables
        {
            return Err(CircuitError::KeyMismatch(format!(
                "key is for {} variables and {} public inputs, the shape has {variables} and {}",
                key.a_query.len(),
                key.vk.gamma_abc_g1.len().saturating_sub(1),
                matrices.num_instance_variables - 1
            )));
        }
        Ok(Self {
            key,
            matrices,
            reduction,
        })
    }
}

/// Development setup for `shape`: a proving key with its matrices and verifying key.
/// The caller's randomness is the trapdoor: whoever knows it can forge proofs.
pub fn setup<C, R>(shape: &C::Shape, rng: &mut R) -> Result<ProvingKey, CircuitError>
where
    C: Circuit,
    R: RngCore + CryptoRng,
{
    let blank = C::blank(shape)?;
    let matrices = ConstraintMatrices::of(blank.clone())?;
    let key =
        Groth16::<Bn254, LibsnarkReduction>::generate_random_parameters_with_reduction(blank, rng)?;
    ProvingKey::from_parts(key, matrices, Reduction::Libsnark)
}

/// The full assignment `[1, public inputs, witnesses]` of `circuit`, computed without
/// building constraints.
pub fn assignment<C: ConstraintSynthesizer<Fr>>(circuit: C) -> Result<Vec<Fr>, CircuitError> {
    let cs = ConstraintSystem::new_ref();
    cs.set_optimization_goal(OptimizationGoal::Constraints);
    cs.set_mode(SynthesisMode::Prove {
        construct_matrices: false,
        generate_lc_assignments: false,
    });
    circuit.generate_constraints(cs.clone())?;
    let inner = cs
        .borrow()
        .ok_or(ark_relations::gr1cs::SynthesisError::MissingCS)?;
    Ok([inner.instance_assignment()?, inner.witness_assignment()?].concat())
}

/// Proves `circuit` under `pk`, refusing a witness that does not satisfy the shape.
pub fn prove<C, R>(pk: &ProvingKey, circuit: C, rng: &mut R) -> Result<Proof, CircuitError>
where
    C: ConstraintSynthesizer<Fr>,
    R: RngCore + CryptoRng,
{
    let z = assignment(circuit)?;
    prove_assignment(pk, &z, rng)
}

/// ark-groth16's proving core on a finished assignment and the cached matrices, after
/// checking that the assignment satisfies them.
pub fn prove_assignment<R: RngCore + CryptoRng>(
    pk: &ProvingKey,
    z: &[Fr],
    rng: &mut R,
) -> Result<Proof, CircuitError> {
    pk.matrices.check(z)?;
    groth16_core(pk, z, Fr::rand(rng), Fr::rand(rng))
}

/// ark-groth16's proving core alone: the witness map (FFTs) of the key's reduction and the
/// MSMs over a finished, already checked assignment, with the zero-knowledge randomness
/// `r`, `s`. The benches measure it against the whole prove path.
pub fn groth16_core(pk: &ProvingKey, z: &[Fr], r: Fr, s: Fr) -> Result<Proof, CircuitError> {
    match pk.reduction {
        Reduction::Libsnark => core_with::<LibsnarkReduction>(pk, z, r, s),
        Reduction::Circom => core_with::<CircomReduction>(pk, z, r, s),
    }
}

fn core_with<Q: R1CSToQAP>(pk: &ProvingKey, z: &[Fr], r: Fr, s: Fr) -> Result<Proof, CircuitError> {
    let m = &pk.matrices;
    Ok(
        Groth16::<Bn254, Q>::create_proof_with_reduction_and_matrices(
            &pk.key,
            r,
            s,
            m.r1cs(),
            m.num_instance_variables,
            m.num_constraints,
            z,
        )?,
    )
}

fn check_input_count(vk: &VerifyingKey, public_inputs: &[Fr]) -> Result<(), CircuitError> {
    let expected =
        vk.gamma_abc_g1.len().checked_sub(1).ok_or_else(|| {
            CircuitError::Degenerate("verifying key: it has no input bases".into())
        })?;
    if public_inputs.len() == expected {
        Ok(())
    } else {
        Err(CircuitError::KeyMismatch(format!(
            "{} public inputs for a key that takes {expected}",
            public_inputs.len()
        )))
    }
}

/// Verifies one proof.
pub fn verify(
    vk: &VerifyingKey,
    public_inputs: &[Fr],
    proof: &Proof,
) -> Result<bool, CircuitError> {
    verify_prepared(&prepare(vk), public_inputs, proof)
}

/// A verifying key prepared once for many single verifications: the pairing `e(α, β)`
/// and the G2 points' line coefficients are computed ahead (about a third of a single
/// verification).
pub type PreparedVerifyingKey = ark_groth16::PreparedVerifyingKey<Bn254>;

/// Prepares `vk` for [`verify_prepared`].
pub fn prepare(vk: &VerifyingKey) -> PreparedVerifyingKey {
    ark_groth16::prepare_verifying_key(vk)
}

/// Verifies one proof under a prepared key.
pub fn verify_prepared(
    pvk: &PreparedVerifyingKey,
    public_inputs: &[Fr],
    proof: &Proof,
) -> Result<bool, CircuitError> {
    check_input_count(&pvk.vk, public_inputs)?;
    Ok(Groth16::<Bn254, LibsnarkReduction>::verify_proof(
        pvk,
        proof,
        public_inputs,
    )?)
}

/// Verifies many proofs under one verifying key with a single multi-pairing: each
/// proof's equation is scaled by an independent random 128-bit factor and the sum is
/// checked at once. Accepts only if every proof is valid (except with probability
/// 2^-128 over `rng`).
pub fn batch_verify<R: Rng>(
    vk: &VerifyingKey,
    batch: &[(Vec<Fr>, Proof)],
    rng: &mut R,
) -> Result<bool, CircuitError> {
    match batch {
        [] => Ok(true),
        // One proof: the plain check needs one pairing fewer.
        [(inputs, proof)] => verify(vk, inputs, proof),
        _ => {
            let factors: Vec<Fr> = (0..batch.len())
                .map(|_| Fr::from(rng.gen::<u128>()))
                .collect();
            batch_verify_with(vk, batch, &factors)
        }
    }
}

/// [`batch_verify`] with one random factor per proof drawn.
fn batch_verify_with(
    vk: &VerifyingKey,
    batch: &[(Vec<Fr>, Proof)],
    factors: &[Fr],
) -> Result<bool, CircuitError> {
    for (inputs, _) in batch {
        check_input_count(vk, inputs)?;
    }
    let factor_sum: Fr = factors.iter().sum();
    // Σ r_i · (IC_0 + Σ_j x_ij IC_j) as one MSM over the input bases (checked non-empty).
    let mut input_scalars = vec![factor_sum];
    for j in 0..vk.gamma_abc_g1.len().saturating_sub(1) {
        input_scalars.push(batch.iter().zip(factors).map(|((x, _), r)| x[j] * r).sum());
    }
    let combined_inputs = G1Projective::msm(&vk.gamma_abc_g1, &input_scalars).map_err(|_| {
        CircuitError::KeyMismatch("input bases and scalars differ in length".into())
    })?;
    let cs: Vec<G1Affine> = batch.iter().map(|(_, p)| p.c).collect();
    let combined_c = G1Projective::msm(&cs, factors).expect("equal lengths");

    let mut g1: Vec<G1Affine> = batch
        .par_iter()
        .zip(factors)
        .map(|((_, p), r)| (p.a * r).into_affine())
        .collect();
    let mut g2: Vec<_> = batch.iter().map(|(_, p)| p.b).collect();
    g1.extend([
        (vk.alpha_g1 * -factor_sum).into_affine(),
        (-combined_inputs).into_affine(),
        (-combined_c).into_affine(),
    ]);
    g2.extend([vk.beta_g2, vk.gamma_g2, vk.delta_g2]);
    let product = Bn254::multi_pairing(g1, g2);
    Ok(product.is_zero())
}

/// Compressed bytes of a verifying key.
pub fn verifying_key_to_bytes(vk: &VerifyingKey) -> Vec<u8> {
    let mut out = Vec::new();
    vk.serialize_compressed(&mut out)
        .expect("serializing into a Vec cannot fail");
    out
}

/// A verifying key from compressed bytes: points checked to lie in their groups, and
/// none of them the identity. A key with identity points is never the output of a
/// setup, and some make every statement verify: with `γ·IC = O` for every input base
/// and a "proof" `(α, β, O)`, the pairing equation holds whatever the inputs are.
pub fn verifying_key_from_bytes(bytes: &[u8]) -> Result<VerifyingKey, CircuitError> {
    let vk = VerifyingKey::deserialize_compressed(bytes)?;
    check_verifying_key_points(&vk)?;
    Ok(vk)
}

/// Refuses a verifying key with an identity point or without input bases.
pub fn check_verifying_key_points(vk: &VerifyingKey) -> Result<(), CircuitError> {
    let bad = |what: String| Err(CircuitError::Degenerate(format!("verifying key: {what}")));
    if vk.gamma_abc_g1.is_empty() {
        return bad("it has no input bases".into());
    }
    if vk.alpha_g1.is_zero() {
        return bad("alpha is the identity point".into());
    }
    for (name, point) in [
        ("beta", vk.beta_g2),
        ("gamma", vk.gamma_g2),
        ("delta", vk.delta_g2),
    ] {
        if point.is_zero() {
            return bad(format!("{name} is the identity point"));
        }
    }
    if let Some(i) = vk.gamma_abc_g1.iter().position(|p| p.is_zero()) {
        return bad(format!("input base {i} is the identity point"));
    }
    Ok(())
}

/// Compressed bytes of a proof: 128 bytes.
pub fn proof_to_bytes(proof: &Proof) -> Vec<u8> {
    let mut out = Vec::new();
    proof
        .serialize_compressed(&mut out)
        .expect("serializing into a Vec cannot fail");
    out
}

/// A proof from compressed bytes: points checked to lie in their groups, and none of
/// them the identity (an honest proof has one only with negligible probability).
pub fn proof_from_bytes(bytes: &[u8]) -> Result<Proof, CircuitError> {
    let proof = Proof::deserialize_compressed(bytes)?;
    if proof.a.is_zero() || proof.b.is_zero() || proof.c.is_zero() {
        return Err(CircuitError::Degenerate(
            "proof: a point of it is the identity".into(),
        ));
    }
    Ok(proof)
}

/// A shape's digest: its canonical description's SHA-256, big-endian, reduced into the
/// field. The query circuits take it as their first public input and fix it by a
/// constraint, so that a statement names the shape it is about: a key made for one
/// shape cannot verify a statement recomputed for another, even when both keys are
/// trusted and their public inputs have the same layout. Any Groth16 verifier can
/// recompute it from the description.
pub fn shape_digest(description: &str) -> Fr {
    use ark_ff::PrimeField;
    Fr::from_be_bytes_mod_order(&Sha256::digest(description.as_bytes()))
}

/// The fingerprint a verifier pins: `sha256:` and the hex SHA-256 of the compressed key.
pub fn fingerprint(vk: &VerifyingKey) -> String {
    let digest = Sha256::digest(verifying_key_to_bytes(vk));
    format!("sha256:{}", hex::encode(digest))
}
