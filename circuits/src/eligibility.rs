//! The eligibility circuit: a donor holds a credential an accepted issuer signed, was
//! born on or before a cutoff date (so is an adult on the donation date), lives in one of
//! the dataset's allowed districts, and derives a per-dataset nullifier from their secret;
//! nothing else is revealed (not the birth date, the district, the credential or the
//! signature), and the proof is bound to the hash of the donated records.
//!
//! - holder: `Poseidon(HOLDER_TAG, secret)`, what an issuer signs for (never the secret);
//! - credential message: `Poseidon(CREDENTIAL_TAG, holder, birth date, district)`, signed
//!   with EdDSA-Poseidon ([`crate::eddsa`]);
//! - nullifier: `Poseidon(NULLIFIER_TAG, secret, scope)`: the same donor gets the same
//!   nullifier within a scope (a dataset), and unlinkable ones across scopes.
//!
//! [`WithdrawalCircuit`] proves knowledge of the secret behind a nullifier, bound to a
//! withdrawal request, so a donor can withdraw without revealing anything more.
//!
//! Dates are `YYYYMMDD` integers, whose order is the calendar's. Public inputs, in order:
//! issuer key (x, y), cutoff, the allowed districts (padded to the shape by repeating
//! one), scope, records hash, nullifier.

use ark_ff::{BigInteger, Field, PrimeField};
use ark_r1cs_std::{
    alloc::AllocVar,
    boolean::Boolean,
    eq::EqGadget,
    fields::{fp::FpVar, FieldVar},
    groups::curves::twisted_edwards::AffineVar,
};
use ark_relations::gr1cs::{ConstraintSynthesizer, ConstraintSystemRef, SynthesisError};

use crate::{
    eddsa::{self, Point, SecretKey, Signature},
    gadgets::{is_member, to_bits, witness_bits},
    poseidon, snark, CircuitError, Fr,
};

/// Domain tag of holder commitments.
pub const HOLDER_TAG: u64 = 0x7a6b_6611;
/// Domain tag of credential messages.
pub const CREDENTIAL_TAG: u64 = 0x7a6b_6612;
/// Domain tag of nullifiers.
pub const NULLIFIER_TAG: u64 = 0x7a6b_6613;
/// Bits of a `YYYYMMDD` date (99991231 < 2^27).
pub const DATE_BITS: u32 = 27;
/// Bits of a district code.
pub const DISTRICT_BITS: u32 = 16;
/// Bits of a signature's `S` (below BabyJubJub's subgroup order, itself below 2^251).
const S_BITS: usize = 251;

/// Everything that fixes the circuit: how many allowed districts it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EligibilityShape {
    /// Slots of the allowed-district list (at least 1).
    pub districts: usize,
}

impl EligibilityShape {
    /// The shape's canonical text (its key's name), as for the query circuits' shapes.
    pub fn description(&self) -> String {
        format!("eligibility/v2 districts={}", self.districts)
    }
}

/// What an issuer attests of a holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credential {
    /// The holder's commitment, [`holder`] of their secret.
    pub holder: Fr,
    /// Birth date, `YYYYMMDD`.
    pub birth_date: u32,
    /// Residence district code.
    pub district: u64,
}

impl Credential {
    /// The field element the issuer signs.
    pub fn message(&self) -> Fr {
        poseidon::hash(&[
            Fr::from(CREDENTIAL_TAG),
            self.holder,
            Fr::from(self.birth_date),
            Fr::from(self.district),
        ])
    }

    /// The issuer's signature on this credential.
    pub fn sign(&self, issuer: &SecretKey) -> Signature {
        issuer.sign(self.message())
    }
}

/// A holder's public commitment to their secret.
pub fn holder(secret: Fr) -> Fr {
    poseidon::hash(&[Fr::from(HOLDER_TAG), secret])
}

/// The holder's nullifier within `scope`.
pub fn nullifier(secret: Fr, scope: Fr) -> Fr {
    poseidon::hash(&[Fr::from(NULLIFIER_TAG), secret, scope])
}

/// The public statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EligibilityInstance {
    /// The issuer's public key (the verifier checks it is an accepted, valid key).
    pub issuer: Point,
    /// Latest birth date that is eligible, `YYYYMMDD`.
    pub cutoff: u32,
    /// Allowed district codes.
    pub districts: Vec<u64>,
    /// The scope nullifiers are unique in (a dataset).
    pub scope: Fr,
    /// Hash of the donated records the proof is bound to.
    pub records: Fr,
    /// The donor's nullifier in `scope`.
    pub nullifier: Fr,
}

impl EligibilityInstance {
    /// The public-input vector a verifier checks a proof against, after checking the
    /// issuer key, the cutoff and the district list against the shape.
    pub fn public_inputs(&self, shape: &EligibilityShape) -> Result<Vec<Fr>, CircuitError> {
        if !eddsa::is_valid_key(&self.issuer) {
            return Err(CircuitError::InvalidQuery(
                "the issuer key is not a BabyJubJub public key".into(),
            ));
        }
        if u64::from(self.cutoff) >> DATE_BITS != 0 {
            return Err(CircuitError::InvalidQuery(format!(
                "cutoff {} is not a YYYYMMDD date",
                self.cutoff
            )));
        }
        if self.districts.is_empty()
            || self.districts.len() > shape.districts
            || self.districts.iter().any(|d| d >> DISTRICT_BITS != 0)
        {
            return Err(CircuitError::InvalidQuery(format!(
                "the allowed districts must be 1 to {} codes below 2^{DISTRICT_BITS}",
                shape.districts
            )));
        }
        Ok(self.assemble(shape))
    }

    /// The public-input vector, the district list padded by repeating its first item.
    fn assemble(&self, shape: &EligibilityShape) -> Vec<Fr> {
        let first = self.districts.first().copied().unwrap_or(0);
        let districts =
            (0..shape.districts).map(|i| Fr::from(self.districts.get(i).copied().unwrap_or(first)));
        [self.issuer.x, self.issuer.y, Fr::from(self.cutoff)]
            .into_iter()
            .chain(districts)
            .chain([self.scope, self.records, self.nullifier])
            .collect()
    }
}

/// Native twin: whether `holding` meets `instance`'s issuer, cutoff and districts, with
/// the nullifier `instance` states.
pub fn holds(instance: &EligibilityInstance, holding: &Holding) -> bool {
    let Holding {
        credential,
        signature,
        secret,
    } = holding;
    credential.holder == holder(*secret)
        && eddsa::verify(&instance.issuer, credential.message(), signature)
        && credential.birth_date <= instance.cutoff
        && instance.districts.contains(&credential.district)
        && credential.district >> DISTRICT_BITS == 0
        && instance.nullifier == nullifier(*secret, instance.scope)
}

/// What a dataset requires of donors: the issuer, the cutoff, the allowed districts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// The issuer's public key.
    pub issuer: Point,
    /// Latest eligible birth date, `YYYYMMDD`.
    pub cutoff: u32,
    /// Allowed district codes.
    pub districts: Vec<u64>,
}

/// What a holder keeps: their credential, the issuer's signature on it, their secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holding {
    /// The credential.
    pub credential: Credential,
    /// The issuer's signature on it.
    pub signature: Signature,
    /// The secret behind the credential's holder commitment.
    pub secret: Fr,
}

/// One eligibility proof's statement and witness.
#[derive(Clone, Debug)]
pub struct EligibilityCircuit {
    /// The shape.
    pub shape: EligibilityShape,
    /// The public statement.
    pub instance: EligibilityInstance,
    /// The witness.
    pub holding: Holding,
}

impl EligibilityCircuit {
    /// An honest circuit for a donation of the records hashed to `records` within
    /// `scope`; refused when the holding does not meet `requirement` (there is nothing
    /// true to prove).
    pub fn new(
        shape: EligibilityShape,
        requirement: &Requirement,
        scope: Fr,
        records: Fr,
        holding: Holding,
    ) -> Result<Self, CircuitError> {
        if shape.districts == 0 {
            return Err(CircuitError::InvalidShape("no district slots".into()));
        }
        let instance = EligibilityInstance {
            issuer: requirement.issuer,
            cutoff: requirement.cutoff,
            districts: requirement.districts.clone(),
            scope,
            records,
            nullifier: nullifier(holding.secret, scope),
        };
        instance.public_inputs(&shape)?;
        if !holds(&instance, &holding) {
            return Err(CircuitError::InvalidWitness(
                "the credential does not make its holder eligible: a wrong secret, a bad \
                 signature, born after the cutoff, or a district outside the allowed set"
                    .into(),
            ));
        }
        Ok(Self {
            shape,
            instance,
            holding,
        })
    }
}

impl snark::Circuit for EligibilityCircuit {
    type Shape = EligibilityShape;

    /// A placeholder with a real signature (the gadget needs valid curve points).
    fn blank(shape: &EligibilityShape) -> Result<Self, CircuitError> {
        let issuer = SecretKey(eddsa::Scalar::from(1u8));
        let secret = Fr::from(1u8);
        let credential = Credential {
            holder: holder(secret),
            birth_date: 0,
            district: 0,
        };
        let requirement = Requirement {
            issuer: issuer.public_key(),
            cutoff: 0,
            districts: vec![0],
        };
        let holding = Holding {
            credential,
            signature: credential.sign(&issuer),
            secret,
        };
        Self::new(*shape, &requirement, Fr::from(0u8), Fr::from(0u8), holding)
    }

    fn public_inputs(&self) -> Result<Vec<Fr>, CircuitError> {
        self.instance.public_inputs(&self.shape)
    }
}

impl ConstraintSynthesizer<Fr> for EligibilityCircuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let slots = self.shape.districts;
        let issuer = AffineVar::new_input(cs.clone(), || {
            Ok(ark_ec::twisted_edwards::Projective::from(
                self.instance.issuer,
            ))
        })?;
        let inputs = self.instance.assemble(&self.shape)[2..]
            .iter()
            .map(|v| FpVar::new_input(cs.clone(), || Ok(*v)))
            .collect::<Result<Vec<_>, _>>()?;
        let cutoff = &inputs[0];
        let districts = &inputs[1..1 + slots];
        let [scope, records, nullifier] = &inputs[1 + slots..] else {
            unreachable!("three public inputs after the districts")
        };

        let secret = FpVar::new_witness(cs.clone(), || Ok(self.holding.secret))?;
        let birth_date = Boolean::le_bits_to_fp(&witness_bits(
            cs.clone(),
            Some(Fr::from(self.holding.credential.birth_date)),
            DATE_BITS,
        )?)?;
        let district = Boolean::le_bits_to_fp(&witness_bits(
            cs.clone(),
            Some(Fr::from(self.holding.credential.district)),
            DISTRICT_BITS,
        )?)?;

        // Born on or before the cutoff: both are dates, so the difference fits.
        to_bits(cutoff, DATE_BITS)?;
        to_bits(&(cutoff - &birth_date), DATE_BITS)?;
        is_member(&district, districts)?.enforce_equal(&Boolean::TRUE)?;

        // The issuer signed this holder's credential.
        let holder =
            poseidon::gadget::hash(&[FpVar::constant(Fr::from(HOLDER_TAG)), secret.clone()])?;
        let message = poseidon::gadget::hash(&[
            FpVar::constant(Fr::from(CREDENTIAL_TAG)),
            holder,
            birth_date,
            district,
        ])?;
        let r8 = eddsa::witness_point(cs.clone(), self.holding.signature.r8)?;
        // S < subOrder < r: the same integer in the base field.
        let s = Fr::from_le_bytes_mod_order(&self.holding.signature.s.into_bigint().to_bytes_le());
        let s_bits = witness_bits(cs.clone(), Some(s), S_BITS as u32)?;
        eddsa::verify_gadget(&issuer, &message, &r8, &s_bits)?;

        // The nullifier, and the records hash bound into the proof (a public input that
        // appears in no constraint would not be).
        poseidon::gadget::hash(&[
            FpVar::constant(Fr::from(NULLIFIER_TAG)),
            secret,
            scope.clone(),
        ])?
        .enforce_equal(nullifier)?;
        let square = FpVar::new_witness(cs.clone(), || Ok(self.instance.records.square()))?;
        square.enforce_equal(&(records * records))?;
        Ok(())
    }
}

/// The withdrawal circuit's shape (it has no parameters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WithdrawalShape;

impl WithdrawalShape {
    /// The shape's canonical text (its key's name).
    pub const DESCRIPTION: &'static str = "withdrawal/v1";
}

/// A donor proves they know the secret behind a nullifier, to withdraw that donor's
/// donations: public scope, nullifier and `binding` (the hash of the withdrawal request,
/// so a proof cannot be replayed for another), witness the secret.
#[derive(Clone, Copy, Debug)]
pub struct WithdrawalCircuit {
    /// The dataset's scope.
    pub scope: Fr,
    /// The nullifier whose donations are withdrawn.
    pub nullifier: Fr,
    /// What the proof is bound to.
    pub binding: Fr,
    /// The holder's secret.
    pub secret: Fr,
}

impl WithdrawalCircuit {
    /// The circuit for `secret` in `scope`, bound to `binding`.
    pub fn new(secret: Fr, scope: Fr, binding: Fr) -> Self {
        Self {
            scope,
            nullifier: nullifier(secret, scope),
            binding,
            secret,
        }
    }

    /// The public inputs: scope, nullifier, binding.
    pub fn public_inputs_of(scope: Fr, nullifier: Fr, binding: Fr) -> Vec<Fr> {
        vec![scope, nullifier, binding]
    }
}

impl snark::Circuit for WithdrawalCircuit {
    type Shape = WithdrawalShape;

    fn blank(_: &WithdrawalShape) -> Result<Self, CircuitError> {
        Ok(Self::new(Fr::from(1u8), Fr::from(0u8), Fr::from(0u8)))
    }

    fn public_inputs(&self) -> Result<Vec<Fr>, CircuitError> {
        Ok(Self::public_inputs_of(
            self.scope,
            self.nullifier,
            self.binding,
        ))
    }
}

impl ConstraintSynthesizer<Fr> for WithdrawalCircuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let scope = FpVar::new_input(cs.clone(), || Ok(self.scope))?;
        let claimed = FpVar::new_input(cs.clone(), || Ok(self.nullifier))?;
        let binding = FpVar::new_input(cs.clone(), || Ok(self.binding))?;
        let secret = FpVar::new_witness(cs.clone(), || Ok(self.secret))?;
        poseidon::gadget::hash(&[FpVar::constant(Fr::from(NULLIFIER_TAG)), secret, scope])?
            .enforce_equal(&claimed)?;
        // Bind the request: a public input in no constraint would not be.
        let square = FpVar::new_witness(cs.clone(), || Ok(self.binding.square()))?;
        square.enforce_equal(&(&binding * &binding))?;
        Ok(())
    }
}
