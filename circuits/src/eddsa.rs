//! EdDSA over BabyJubJub with a Poseidon challenge, compatible with circomlib's
//! `EdDSAPoseidonVerifier` and circomlibjs' `verifyPoseidon`: natively and as a gadget.
//!
//! The curve is circomlib's model of BabyJubJub, `168700·x² + y² = 1 + 168696·x²·y²`
//! over BN254's scalar field, with base point `Base8` of prime order `subOrder`. A
//! signature `(R8, S)` on a field element `m` under public key `A` is valid when
//! `S < subOrder` and `S·Base8 = R8 + 8·h·A`, where `h = Poseidon(R8.x, R8.y, A.x, A.y, m)`.
//!
//! Keys made here are `A = k·Base8` for a uniform scalar `k` (circomlib derives `k` from a
//! seed with BLAKE-512; only verification must interoperate). Nonces are derived
//! deterministically from the key and the message, as in RFC 8032.

use ark_ec::{
    models::CurveConfig,
    twisted_edwards::{Affine, MontCurveConfig, Projective, TECurveConfig},
    AffineRepr, CurveGroup, PrimeGroup,
};
use ark_ff::{AdditiveGroup, BigInteger, MontFp, PrimeField};
use ark_r1cs_std::{
    boolean::Boolean,
    convert::ToBitsGadget,
    eq::EqGadget,
    fields::fp::FpVar,
    groups::{curves::twisted_edwards::AffineVar, CurveVar},
};
use ark_relations::gr1cs::SynthesisError;
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use sha2::{Digest, Sha512};

use crate::{poseidon, Fr};

/// circomlib's BabyJubJub (twisted Edwards form `a = 168700`, `d = 168696`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BabyJubJub;

/// Scalars of the prime-order subgroup (modulo `subOrder`).
pub type Scalar = ark_ed_on_bn254::Fr;

/// A point of the curve.
pub type Point = Affine<BabyJubJub>;

impl CurveConfig for BabyJubJub {
    type BaseField = Fr;
    type ScalarField = Scalar;
    const COFACTOR: &'static [u64] = &[8];
    const COFACTOR_INV: Scalar =
        MontFp!("2394026564107420727433200628387514462817212225638746351800188703329891451411");
}

impl TECurveConfig for BabyJubJub {
    const COEFF_A: Fr = MontFp!("168700");
    const COEFF_D: Fr = MontFp!("168696");
    /// circomlib's `Base8`, which generates the prime-order subgroup.
    const GENERATOR: Point = Affine::new_unchecked(
        MontFp!("5299619240641551281634865583518297030282874472190772894086521144482721001553"),
        MontFp!("16950150798460657717958625567821834550301663161624707787222815936182638968203"),
    );
    type MontCurveConfig = BabyJubJub;
}

impl MontCurveConfig for BabyJubJub {
    /// `2(a + d) / (a - d)`.
    const COEFF_A: Fr = MontFp!("168698");
    /// `4 / (a - d)`.
    const COEFF_B: Fr = MontFp!("1");
    type TECurveConfig = BabyJubJub;
}

/// circomlib's `Base8`.
pub fn base8() -> Point {
    BabyJubJub::GENERATOR
}

/// A signature: the nonce point `R8` and the scalar `S`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signature {
    /// `r·Base8`.
    pub r8: Point,
    /// `r + 8·h·k mod subOrder`.
    pub s: Scalar,
}

/// A signing key: the scalar `k` of the public key `k·Base8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecretKey(pub Scalar);

impl SecretKey {
    /// The public key `k·Base8`.
    pub fn public_key(&self) -> Point {
        (base8() * self.0).into_affine()
    }

    /// Signs `message`; the nonce is derived from the key and the message.
    pub fn sign(&self, message: Fr) -> Signature {
        let mut digest = Sha512::new();
        digest.update(b"zkfabric eddsa-poseidon nonce");
        digest.update(self.0.into_bigint().to_bytes_le());
        digest.update(message.into_bigint().to_bytes_le());
        let r = Scalar::from_le_bytes_mod_order(&digest.finalize());
        let r8 = (base8() * r).into_affine();
        let h = challenge(&r8, &self.public_key(), message);
        // S = r + 8·h·k: the verifier multiplies A by 8·h.
        let s = r + scalar_of(h) * Scalar::from(8u8) * self.0;
        Signature { r8, s }
    }
}

/// A point as 64 hex digits (compressed: `y` and the sign of `x`).
pub fn point_to_hex(point: &Point) -> String {
    let mut bytes = Vec::with_capacity(32);
    point
        .serialize_compressed(&mut bytes)
        .expect("serializing into a Vec cannot fail");
    hex::encode(bytes)
}

/// A point from [`point_to_hex`]'s form, checked to lie on the curve in the prime-order
/// subgroup.
pub fn point_from_hex(text: &str) -> Option<Point> {
    let bytes = hex::decode(text.trim()).ok()?;
    Point::deserialize_compressed(&bytes[..]).ok()
}

/// A scalar as 64 hex digits (little-endian).
pub fn scalar_to_hex(scalar: &Scalar) -> String {
    hex::encode(scalar.into_bigint().to_bytes_le())
}

/// A scalar from [`scalar_to_hex`]'s form; `None` unless canonical.
pub fn scalar_from_hex(text: &str) -> Option<Scalar> {
    let bytes = hex::decode(text.trim()).ok()?;
    Scalar::deserialize_compressed(&bytes[..]).ok()
}

/// The challenge `Poseidon(R8.x, R8.y, A.x, A.y, m)`.
pub fn challenge(r8: &Point, key: &Point, message: Fr) -> Fr {
    poseidon::hash(&[r8.x, r8.y, key.x, key.y, message])
}

/// A base-field element as an integer scalar modulo `subOrder`.
fn scalar_of(x: Fr) -> Scalar {
    Scalar::from_le_bytes_mod_order(&x.into_bigint().to_bytes_le())
}

/// Whether `key` is a valid public key: on the curve, in the prime-order subgroup, not
/// the identity.
pub fn is_valid_key(key: &Point) -> bool {
    key.is_on_curve() && key.is_in_correct_subgroup_assuming_on_curve() && !key.is_zero()
}

/// Verifies `signature` on `message` under `key` as circomlib does.
pub fn verify(key: &Point, message: Fr, signature: &Signature) -> bool {
    if !is_valid_key(key) || !signature.r8.is_on_curve() {
        return false;
    }
    let h = challenge(&signature.r8, key, message);
    // 8·h·A with h taken as an integer (it is not reduced modulo subOrder in circomlib).
    let h_a = Projective::from(*key).mul_bigint(h.into_bigint());
    let right = Projective::from(signature.r8) + h_a.double().double().double();
    Projective::generator() * signature.s == right
}

/// Constrains `signature` to be valid on `message` under `key`, as circomlib's
/// `EdDSAPoseidonVerifier` does. `key` must be a checked public key (a public input the
/// verifier validated, or a constant); `s_bits` are the little-endian bits of `S`, which
/// the caller allocates. `S < subOrder` is enforced, as circomlib does: otherwise `S` and
/// `S + subOrder` would both verify, and signatures would be malleable.
pub fn verify_gadget(
    key: &AffineVar<BabyJubJub, FpVar<Fr>>,
    message: &FpVar<Fr>,
    r8: &AffineVar<BabyJubJub, FpVar<Fr>>,
    s_bits: &[Boolean<Fr>],
) -> Result<(), SynthesisError> {
    let h = poseidon::gadget::hash(&[
        r8.x.clone(),
        r8.y.clone(),
        key.x.clone(),
        key.y.clone(),
        message.clone(),
    ])?;
    // h as its canonical 254 bits, then 8·h·A by three doublings.
    let h_bits = h.to_bits_le()?;
    let mut right = key.scalar_mul_le(h_bits.iter())?;
    for _ in 0..3 {
        right.double_in_place()?;
    }
    right += r8;
    // S < subOrder, i.e. S <= subOrder - 1 as an integer.
    let mut largest = Scalar::MODULUS;
    largest.sub_with_borrow(&ark_ff::BigInt::from(1u8));
    Boolean::enforce_smaller_or_equal_than_le(s_bits, largest)?;
    let mut powers = Vec::with_capacity(s_bits.len());
    let mut power = Projective::<BabyJubJub>::generator();
    for _ in s_bits {
        powers.push(power);
        power.double_in_place();
    }
    // S·Base8 from a table of constant multiples: two bits per addition.
    let mut left = AffineVar::<BabyJubJub, FpVar<Fr>>::zero();
    left.precomputed_base_scalar_mul_le(s_bits.iter().zip(powers.iter()))?;
    left.enforce_equal(&right)
}

/// Allocates a witness point, checking only that it lies on the curve.
pub fn witness_point(
    cs: ark_relations::gr1cs::ConstraintSystemRef<Fr>,
    point: Point,
) -> Result<AffineVar<BabyJubJub, FpVar<Fr>>, SynthesisError> {
    AffineVar::new_variable_omit_prime_order_check(
        cs,
        || Ok(Projective::from(point)),
        ark_r1cs_std::alloc::AllocationMode::Witness,
    )
}

#[cfg(test)]
mod tests {
    use ark_r1cs_std::{alloc::AllocVar, fields::fp::FpVar, GR1CSVar};
    use ark_relations::gr1cs::ConstraintSystem;
    use serde_json::Value;

    use super::*;

    /// circomlibjs 0.1.7's signatures (`testdata/`, from the shared vectors).
    fn vectors() -> Vec<(Point, Fr, Signature)> {
        let json: Value =
            serde_json::from_str(include_str!("../testdata/eddsa_poseidon_circomlib.json"))
                .unwrap();
        let fr = |v: &Value| v.as_str().unwrap().parse::<Fr>().unwrap();
        let point = |v: &Value| {
            let p = Point::new_unchecked(fr(&v[0]), fr(&v[1]));
            assert!(p.is_on_curve());
            p
        };
        assert_eq!(point(&json["base8"]), base8());
        json["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                let s = v["S"].as_str().unwrap().parse::<Scalar>().unwrap();
                (
                    point(&v["public_key"]),
                    fr(&v["message"]),
                    Signature {
                        r8: point(&v["R8"]),
                        s,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn circomlib_signatures_verify_and_changed_ones_do_not() {
        for (key, message, signature) in vectors() {
            assert!(is_valid_key(&key));
            assert!(verify(&key, message, &signature));
            assert!(!verify(&key, message + Fr::from(1u8), &signature));
            let mut s = signature;
            s.s += Scalar::from(1u8);
            assert!(!verify(&key, message, &s));
            let other = SecretKey(Scalar::from(7u8)).public_key();
            assert!(!verify(&other, message, &signature));
        }
    }

    #[test]
    fn points_and_scalars_round_trip_through_hex() {
        let key = SecretKey(Scalar::from(987_654_321u64));
        let public = key.public_key();
        assert_eq!(point_from_hex(&point_to_hex(&public)), Some(public));
        assert_eq!(scalar_from_hex(&scalar_to_hex(&key.0)), Some(key.0));
        // A point off the prime-order subgroup is refused.
        let low_order = Point::new_unchecked(Fr::from(0u8), -Fr::from(1u8));
        assert!(low_order.is_on_curve());
        assert_eq!(point_from_hex(&point_to_hex(&low_order)), None);
    }

    #[test]
    fn our_signatures_verify() {
        let key = SecretKey(Scalar::from(123_456_789u64));
        let signature = key.sign(Fr::from(42u8));
        assert!(verify(&key.public_key(), Fr::from(42u8), &signature));
        assert_eq!(signature, key.sign(Fr::from(42u8)), "deterministic nonces");
        assert!(!verify(&key.public_key(), Fr::from(43u8), &signature));
    }

    /// Whether the gadget accepts `signature` on `message` under `key`; the constraints.
    fn gadget_accepts(key: Point, message: Fr, signature: Signature) -> (bool, usize) {
        let bits = signature.s.into_bigint().to_bits_le();
        gadget_accepts_bits(key, message, signature.r8, &bits)
    }

    /// Whether the gadget accepts `S` given as its little-endian bits (251 are used).
    fn gadget_accepts_bits(key: Point, message: Fr, r8: Point, bits: &[bool]) -> (bool, usize) {
        let cs = ConstraintSystem::<Fr>::new_ref();
        let key_var = AffineVar::new_input(cs.clone(), || Ok(Projective::from(key))).unwrap();
        let message_var = FpVar::new_witness(cs.clone(), || Ok(message)).unwrap();
        let r8 = witness_point(cs.clone(), r8).unwrap();
        let s_bits: Vec<Boolean<Fr>> = bits[..251]
            .iter()
            .map(|b| Boolean::new_witness(cs.clone(), || Ok(*b)).unwrap())
            .collect();
        verify_gadget(&key_var, &message_var, &r8, &s_bits).unwrap();
        assert_eq!(key_var.x.value().unwrap(), key.x);
        (cs.is_satisfied().unwrap(), cs.num_constraints())
    }

    #[test]
    fn the_gadget_refuses_s_plus_the_subgroup_order() {
        // S + subOrder satisfies the verification equation too (Base8 has order
        // subOrder): a second signature on the same message. circomlib refuses S >=
        // subOrder, and so does the gadget. Take a signature whose S + subOrder still fits
        // the 251 bits the circuit allocates.
        let key = SecretKey(Scalar::from(5u8));
        let (message, signature, shifted) = (0u64..)
            .map(|m| {
                let signature = key.sign(Fr::from(m));
                let mut shifted = signature.s.into_bigint();
                shifted.add_with_carry(&Scalar::MODULUS);
                (Fr::from(m), signature, shifted.to_bits_le())
            })
            .find(|(_, _, bits)| bits[251..].iter().all(|b| !b))
            .unwrap();
        let honest = signature.s.into_bigint().to_bits_le();
        assert!(gadget_accepts_bits(key.public_key(), message, signature.r8, &honest).0);
        assert!(!gadget_accepts_bits(key.public_key(), message, signature.r8, &shifted).0);
    }

    #[test]
    fn the_gadget_accepts_circomlib_signatures_and_rejects_forgeries() {
        for (key, message, signature) in vectors() {
            let (ok, constraints) = gadget_accepts(key, message, signature);
            assert!(ok);
            assert!(constraints < 6_000, "{constraints} constraints");
            assert!(!gadget_accepts(key, message + Fr::from(1u8), signature).0);
            let mut forged = signature;
            forged.s += Scalar::from(1u8);
            assert!(!gadget_accepts(key, message, forged).0);
            forged = signature;
            forged.r8 = (forged.r8 + base8()).into_affine();
            assert!(!gadget_accepts(key, message, forged).0);
        }
    }
}
