//! Reading a snarkjs Groth16 `.zkey` (the final key of a phase-2 ceremony) into a proving
//! key for one of our shapes.
//!
//! A `.zkey` is an iden3 binary container: `zkey`, version 1, then numbered sections. The
//! Groth16 ones are 1 (protocol), 2 (field sizes, counts, α, β, γ, δ), 3 (the verifier's
//! input bases), 4 (the A and B matrix coefficients), 5–9 (the prover's A, B₁, B₂, C and
//! H bases). Points are affine, coordinates little-endian in Montgomery form, infinity as
//! zeros; matrix coefficients are Montgomery-encoded twice.
//!
//! [`Zkey::check`] holds the key to exactly the shape's constraint system: variable and
//! public input counts, domain size, and every A and B coefficient, constraint by
//! constraint and wire by wire, with snarkjs' extra rows binding the public inputs. The
//! file carries no C matrix (snarkjs derives C·z as A·z ∘ B·z); C entered the ceremony
//! through the same `.r1cs`, and `snarkjs zkey verify` checks all three matrices
//! against it.

use std::collections::BTreeMap;

use ark_bn254::{Bn254, Fq, Fq2, G1Affine, G2Affine};
use ark_ec::{
    pairing::Pairing,
    short_weierstrass::{Affine, SWCurveConfig},
    AffineRepr,
};
use ark_ff::{BigInt, PrimeField, Zero};
use ark_groth16::VerifyingKey;
use ark_poly::{EvaluationDomain, Radix2EvaluationDomain};

use crate::{
    snark::{Circuit, ConstraintMatrices, ProvingKey, Reduction},
    CircuitError, Fr,
};

/// One A or B matrix entry of a `.zkey`: `matrix` 0 is A, 1 is B.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coefficient {
    /// 0 for A, 1 for B.
    pub matrix: u32,
    /// The constraint (row); rows past the circuit's constraints bind public inputs.
    pub constraint: u32,
    /// The wire (column).
    pub wire: u32,
    /// The coefficient.
    pub value: Fr,
}

/// The contents of a Groth16 `.zkey` that proving needs.
#[derive(Clone, Debug)]
pub struct Zkey {
    /// The key's points as ark-groth16 holds them.
    pub key: ark_groth16::ProvingKey<Bn254>,
    /// The evaluation domain's size.
    pub domain_size: usize,
    /// The A and B matrices, entry by entry.
    pub coefficients: Vec<Coefficient>,
}

/// Why a `.zkey` was refused.
#[derive(Debug, thiserror::Error)]
pub enum ZkeyError {
    /// The bytes are not a Groth16 `.zkey` over BN254 (the section and what is wrong).
    #[error("not a snarkjs Groth16 key over BN254: {0}")]
    Format(String),
    /// The key was made for another constraint system (what differs).
    #[error("the key was made for another constraint system: {0}")]
    OtherCircuit(String),
    /// The key cannot be the end of an honest ceremony (what is wrong with it).
    #[error("the key is not a finished ceremony's: {0}")]
    Unfinished(String),
}

impl From<ZkeyError> for CircuitError {
    fn from(e: ZkeyError) -> Self {
        match e {
            ZkeyError::Unfinished(_) => CircuitError::Degenerate(e.to_string()),
            _ => CircuitError::KeyMismatch(e.to_string()),
        }
    }
}

fn format<T>(message: impl Into<String>) -> Result<T, ZkeyError> {
    Err(ZkeyError::Format(message.into()))
}

/// A little-endian cursor over one section.
struct Reader<'a> {
    section: u32,
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ZkeyError> {
        if self.bytes.len() < n {
            return format(format!("section {} is truncated", self.section));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, ZkeyError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, ZkeyError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn big_int(&mut self) -> Result<BigInt<4>, ZkeyError> {
        let bytes = self.take(32)?;
        let mut limbs = [0u64; 4];
        for (limb, word) in limbs.iter_mut().zip(bytes.chunks_exact(8)) {
            *limb = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        }
        Ok(BigInt::new(limbs))
    }

    /// Four little-endian limbs, refused unless below `modulus`.
    fn reduced(&mut self, modulus: BigInt<4>) -> Result<BigInt<4>, ZkeyError> {
        let raw = self.big_int()?;
        if raw >= modulus {
            return format(format!(
                "section {}: a field element is not reduced",
                self.section
            ));
        }
        Ok(raw)
    }

    /// A base field element in Montgomery form (a point coordinate).
    fn fq(&mut self) -> Result<Fq, ZkeyError> {
        Ok(Fq::new_unchecked(self.reduced(Fq::MODULUS)?))
    }

    /// A scalar Montgomery-encoded twice (a matrix coefficient): `raw = c·R²`.
    fn coefficient(&mut self) -> Result<Fr, ZkeyError> {
        let raw = self.reduced(Fr::MODULUS)?;
        // new_unchecked(raw) stands for raw·R⁻¹, new_unchecked(1) for R⁻¹.
        Ok(Fr::new_unchecked(raw) * Fr::new_unchecked(BigInt::one()))
    }

    fn g1(&mut self) -> Result<G1Affine, ZkeyError> {
        let (x, y) = (self.fq()?, self.fq()?);
        self.point(x.is_zero() && y.is_zero(), || G1Affine::new_unchecked(x, y))
    }

    fn g2(&mut self) -> Result<G2Affine, ZkeyError> {
        let x = Fq2::new(self.fq()?, self.fq()?);
        let y = Fq2::new(self.fq()?, self.fq()?);
        self.point(x.is_zero() && y.is_zero(), || G2Affine::new_unchecked(x, y))
    }

    fn point<P: SWCurveConfig>(
        &self,
        infinity: bool,
        make: impl FnOnce() -> Affine<P>,
    ) -> Result<Affine<P>, ZkeyError> {
        if infinity {
            return Ok(Affine::zero());
        }
        let point = make();
        if !point.is_on_curve() {
            return format(format!(
                "section {}: a point is not on the curve",
                self.section
            ));
        }
        Ok(point)
    }

    fn g1s(&mut self, n: usize) -> Result<Vec<G1Affine>, ZkeyError> {
        (0..n).map(|_| self.g1()).collect()
    }

    fn g2s(&mut self, n: usize) -> Result<Vec<G2Affine>, ZkeyError> {
        (0..n).map(|_| self.g2()).collect()
    }

    fn finish(&self) -> Result<(), ZkeyError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            format(format!(
                "section {} is {} bytes longer than its contents",
                self.section,
                self.bytes.len()
            ))
        }
    }
}

/// The sections of an iden3 binary container, by number.
fn sections(bytes: &[u8]) -> Result<BTreeMap<u32, &[u8]>, ZkeyError> {
    let mut header = Reader { section: 0, bytes };
    if header.take(4)? != b"zkey" {
        return format("the file does not start with `zkey`");
    }
    let version = header.u32()?;
    if version != 1 {
        return format(format!("container version {version} (this reader knows 1)"));
    }
    let count = header.u32()?;
    let mut sections = BTreeMap::new();
    for _ in 0..count {
        let number = header.u32()?;
        let size = usize::try_from(header.u64()?)
            .map_err(|_| ZkeyError::Format(format!("section {number} is too large")))?;
        let body = header
            .take(size)
            .map_err(|_| ZkeyError::Format(format!("section {number} is truncated")))?;
        if sections.insert(number, body).is_some() {
            return format(format!("section {number} appears twice"));
        }
    }
    Ok(sections)
}

impl Zkey {
    /// Parses a Groth16 `.zkey` over BN254, checking that every point lies on its curve
    /// and that the verifier's G2 points lie in their subgroup. (A prover's G2 point off
    /// the subgroup could only make proofs that fail verification.)
    pub fn read(bytes: &[u8]) -> Result<Self, ZkeyError> {
        let sections = sections(bytes)?;
        let section = |number: u32| -> Result<Reader<'_>, ZkeyError> {
            match sections.get(&number) {
                Some(bytes) => Ok(Reader {
                    section: number,
                    bytes,
                }),
                None => format(format!("section {number} is missing")),
            }
        };
        let mut protocol = section(1)?;
        let kind = protocol.u32()?;
        if kind != 1 {
            return format(format!("protocol {kind} (Groth16 is 1)"));
        }
        protocol.finish()?;

        let mut header = section(2)?;
        for (name, modulus) in [("base", Fq::MODULUS), ("scalar", Fr::MODULUS)] {
            let size = header.u32()?;
            if size != 32 || header.big_int()? != modulus {
                return format(format!("the {name} field is not BN254's"));
            }
        }
        let variables = header.u32()? as usize;
        let public = header.u32()? as usize;
        let domain_size = header.u32()? as usize;
        if public >= variables {
            return format(format!(
                "{public} public inputs among {variables} variables"
            ));
        }
        let alpha_g1 = header.g1()?;
        let beta_g1 = header.g1()?;
        let beta_g2 = header.g2()?;
        let gamma_g2 = header.g2()?;
        let delta_g1 = header.g1()?;
        let delta_g2 = header.g2()?;
        header.finish()?;
        for point in [beta_g2, gamma_g2, delta_g2] {
            if point.is_zero() || !point.is_in_correct_subgroup_assuming_on_curve() {
                return format("section 2: a G2 point of the verifying key is not in its group");
            }
        }
        if alpha_g1.is_zero() || delta_g1.is_zero() {
            return format("section 2: α or δ is the point at infinity");
        }

        let mut inputs = section(3)?;
        let gamma_abc_g1 = inputs.g1s(public + 1)?;
        inputs.finish()?;

        let mut matrix = section(4)?;
        let count = matrix.u32()? as usize;
        let mut coefficients = Vec::with_capacity(count.min(matrix.bytes.len() / 44));
        for _ in 0..count {
            coefficients.push(Coefficient {
                matrix: matrix.u32()?,
                constraint: matrix.u32()?,
                wire: matrix.u32()?,
                value: matrix.coefficient()?,
            });
        }
        matrix.finish()?;

        let read_g1s = |number, n| -> Result<Vec<G1Affine>, ZkeyError> {
            let mut points = section(number)?;
            let out = points.g1s(n)?;
            points.finish()?;
            Ok(out)
        };
        let a_query = read_g1s(5, variables)?;
        let b_g1_query = read_g1s(6, variables)?;
        let l_query = read_g1s(8, variables - public - 1)?;
        let h_query = read_g1s(9, domain_size)?;
        let mut b2 = section(7)?;
        let b_g2_query = b2.g2s(variables)?;
        b2.finish()?;

        Ok(Self {
            key: ark_groth16::ProvingKey {
                vk: VerifyingKey {
                    alpha_g1,
                    beta_g2,
                    gamma_g2,
                    delta_g2,
                    gamma_abc_g1,
                },
                beta_g1,
                delta_g1,
                a_query,
                b_g1_query,
                b_g2_query,
                h_query,
                l_query,
            },
            domain_size,
            coefficients,
        })
    }

    /// The proving key for `shape`, once [`Zkey::check`] holds against the shape's
    /// constraint system; it proves with [`super::CircomReduction`].
    pub fn into_proving_key<C: Circuit>(
        self,
        shape: &C::Shape,
    ) -> Result<ProvingKey, CircuitError> {
        let matrices = ConstraintMatrices::of(C::blank(shape)?)?;
        self.check_contributed()?;
        self.check(&matrices)?;
        ProvingKey::from_parts(self.key, matrices, Reduction::Circom)
    }

    /// Refuses key material that no finished phase 2 ends with: identity points; delta
    /// equal to gamma or to the group generator (snarkjs' `groth16 setup` writes both as
    /// the generator, so a `*_0000.zkey` has no contribution: whoever has it knows delta
    /// and can prove anything); G1 and G2 copies of beta and delta that disagree
    /// (`e(beta_1, delta_2) = e(delta_1, beta_2)`). gamma is the generator in every snarkjs
    /// key (its soundness rests on delta), so that alone is not refused. This is no
    /// substitute for `snarkjs zkey verify`, which checks every point against the
    /// phase-1 transcript and the contributions' hashes.
    pub fn check_contributed(&self) -> Result<(), ZkeyError> {
        let unfinished = |what: &str| Err(ZkeyError::Unfinished(what.to_string()));
        let key = &self.key;
        crate::snark::check_verifying_key_points(&key.vk)
            .map_err(|e| ZkeyError::Unfinished(e.to_string()))?;
        if key.beta_g1.is_zero() || key.delta_g1.is_zero() {
            return unfinished("beta or delta in G1 is the identity point");
        }
        if key.vk.delta_g2 == key.vk.gamma_g2 {
            return unfinished(
                "delta equals gamma: no phase-2 contribution was made (a snarkjs \
                 *_0000.zkey?); import the ceremony's final key",
            );
        }
        if key.vk.delta_g2 == G2Affine::generator() || key.delta_g1 == G1Affine::generator() {
            return unfinished("delta is the group generator: no phase-2 contribution was made");
        }
        if Bn254::pairing(key.beta_g1, key.vk.delta_g2)
            != Bn254::pairing(key.delta_g1, key.vk.beta_g2)
        {
            return unfinished("the G1 and G2 copies of beta and delta disagree");
        }
        Ok(())
    }

    /// Checks that the key was made for exactly the constraint system `matrices`: the
    /// same variables, public inputs and domain, and the same A and B entries on the same
    /// wires (the public-input rows snarkjs appends included). Names the first
    /// difference.
    pub fn check(&self, matrices: &ConstraintMatrices) -> Result<(), ZkeyError> {
        let differ = |what: String| Err(ZkeyError::OtherCircuit(what));
        let instance = matrices.num_instance_variables;
        let variables = instance + matrices.num_witness_variables;
        let public = self.key.vk.gamma_abc_g1.len().saturating_sub(1);
        if self.key.a_query.len() != variables || public != instance - 1 {
            return differ(format!(
                "it has {} variables and {public} public inputs, the shape {variables} and {}",
                self.key.a_query.len(),
                instance - 1
            ));
        }
        let domain = Radix2EvaluationDomain::<Fr>::new(matrices.num_constraints + instance)
            .map(|d| d.size())
            .unwrap_or(0);
        if self.domain_size != domain {
            return differ(format!(
                "its domain has {} points, the shape's {domain}",
                self.domain_size
            ));
        }
        let theirs = entries(
            self.coefficients
                .iter()
                .map(|c| ((c.matrix, c.constraint, c.wire), c.value)),
        );
        let ours = entries(expected_coefficients(matrices));
        if let Some(((m, row, wire), value)) = ours
            .iter()
            .find(|(at, value)| theirs.get(at) != Some(*value))
            .or_else(|| theirs.iter().find(|(at, _)| !ours.contains_key(at)))
        {
            let matrix = if *m == 0 { "A" } else { "B" };
            let found = theirs.get(&(*m, *row, *wire));
            let what = match (ours.contains_key(&(*m, *row, *wire)), found) {
                (true, None) => "is missing from the key".to_string(),
                (true, Some(_)) => "has another value in the key".to_string(),
                (false, _) => format!("is {value} in the key and absent from the shape"),
            };
            return differ(format!(
                "constraint {row}: the {matrix} coefficient of wire {wire} {what}"
            ));
        }
        Ok(())
    }
}

/// The A and B entries snarkjs' `groth16 setup` writes for `matrices`: the circuit's rows,
/// then one A row per public input (the constant `1` included) binding it.
fn expected_coefficients(
    matrices: &ConstraintMatrices,
) -> impl Iterator<Item = ((u32, u32, u32), Fr)> + '_ {
    let rows = matrices.num_constraints;
    let circuit = [0u32, 1].into_iter().flat_map(move |m| {
        matrices.r1cs()[m as usize]
            .iter()
            .enumerate()
            .flat_map(move |(row, terms)| {
                terms
                    .iter()
                    .map(move |(value, wire)| ((m, row as u32, *wire as u32), *value))
            })
    });
    let inputs = (0..matrices.num_instance_variables)
        .map(move |i| ((0, (rows + i) as u32, i as u32), Fr::from(1u64)));
    circuit.chain(inputs)
}

/// Entries summed per (matrix, row, wire), zeros dropped: the matrix itself, however its
/// terms were listed.
fn entries(terms: impl Iterator<Item = ((u32, u32, u32), Fr)>) -> BTreeMap<(u32, u32, u32), Fr> {
    let mut out = BTreeMap::new();
    for (at, value) in terms {
        *out.entry(at).or_insert_with(Fr::zero) += value;
    }
    out.retain(|_, value| !value.is_zero());
    out
}
