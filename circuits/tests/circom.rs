//! Interop with circom/snarkjs keys: the `.r1cs` export, the `.zkey` check against a
//! shape, and proving with snarkjs' reduction. (`scripts/ceremony.sh` runs the real
//! snarkjs on both ends.)

mod common;

use ark_bn254::Bn254;
use ark_ff::{BigInteger, One, PrimeField};
use ark_groth16::Groth16;
use ark_poly::{EvaluationDomain, Radix2EvaluationDomain};
use common::*;
use r1cs_file::R1csFile;
use zkfabric_circuits::{
    attribute::{AttributeCircuit, AttributeShape},
    circom::{
        r1cs,
        zkey::{Coefficient, Zkey, ZkeyError},
        CircomReduction,
    },
    snark::{self, Circuit, ConstraintMatrices, Reduction},
    CircuitError, Fr,
};

const SHAPE: AttributeShape = AttributeShape { width: 8 };

fn matrices(shape: &AttributeShape) -> ConstraintMatrices {
    ConstraintMatrices::of(AttributeCircuit::blank(shape).unwrap()).unwrap()
}

/// What snarkjs' `groth16 setup` would write for `shape`, with ark-groth16's generator
/// standing in for the ceremony: A and B entry by entry, then one A row per public input.
fn ceremony_key(shape: &AttributeShape, seed: u64) -> Zkey {
    let blank = AttributeCircuit::blank(shape).unwrap();
    let key = Groth16::<Bn254, CircomReduction>::generate_random_parameters_with_reduction(
        blank,
        &mut rng(seed),
    )
    .unwrap();
    zkey_of(shape, key)
}

/// `key` as a `.zkey` for `shape` would carry it: the key and snarkjs' A and B entries.
fn zkey_of(shape: &AttributeShape, key: ark_groth16::ProvingKey<Bn254>) -> Zkey {
    let m = matrices(shape);
    let mut coefficients = Vec::new();
    for (matrix, rows) in m.r1cs()[..2].iter().enumerate() {
        for (row, terms) in rows.iter().enumerate() {
            for (value, wire) in terms {
                coefficients.push(Coefficient {
                    matrix: matrix as u32,
                    constraint: row as u32,
                    wire: *wire as u32,
                    value: *value,
                });
            }
        }
    }
    for i in 0..m.num_instance_variables {
        coefficients.push(Coefficient {
            matrix: 0,
            constraint: (m.num_constraints + i) as u32,
            wire: i as u32,
            value: Fr::one(),
        });
    }
    let domain_size =
        Radix2EvaluationDomain::<Fr>::new(m.num_constraints + m.num_instance_variables)
            .unwrap()
            .size();
    Zkey {
        key,
        domain_size,
        coefficients,
    }
}

fn statement(age: u64) -> AttributeCircuit {
    AttributeCircuit::new(SHAPE, age, Fr::from(7u64), 18, 255).unwrap()
}

#[test]
fn a_ceremony_key_proves_with_snarkjs_reduction_and_survives_storage() {
    let pk = ceremony_key(&SHAPE, 1)
        .into_proving_key::<AttributeCircuit>(&SHAPE)
        .unwrap();
    assert_eq!(pk.reduction(), Reduction::Circom);
    let circuit = statement(30);
    let inputs = circuit.instance.public_inputs(&SHAPE).unwrap();
    let proof = snark::prove(&pk, circuit, &mut rng(2)).unwrap();
    assert!(snark::verify(pk.verifying_key(), &inputs, &proof).unwrap());
    for i in 0..inputs.len() {
        let mut changed = inputs.clone();
        changed[i] += Fr::one();
        assert!(
            !snark::verify(pk.verifying_key(), &changed, &proof).unwrap(),
            "public input {i} changed"
        );
    }
    // Stored and loaded, the key still proves with the reduction it was made for.
    let loaded = snark::ProvingKey::from_bytes::<AttributeCircuit>(&pk.to_bytes(), &SHAPE).unwrap();
    assert_eq!(loaded.reduction(), Reduction::Circom);
    let proof = snark::prove(&loaded, statement(30), &mut rng(3)).unwrap();
    assert!(snark::verify(loaded.verifying_key(), &inputs, &proof).unwrap());
}

#[test]
fn a_key_for_another_shape_is_refused() {
    let wider = AttributeShape { width: 16 };
    let err = ceremony_key(&SHAPE, 5)
        .into_proving_key::<AttributeCircuit>(&wider)
        .unwrap_err();
    assert!(
        matches!(&err, CircuitError::KeyMismatch(m) if m.contains("variables")),
        "{err}"
    );
}

fn refusal(zkey: Zkey) -> String {
    match zkey.check(&matrices(&SHAPE)) {
        Err(ZkeyError::OtherCircuit(message)) => message,
        other => panic!("accepted or refused for another reason: {other:?}"),
    }
}

#[test]
fn a_key_with_a_changed_constraint_is_refused_naming_it() {
    let honest = ceremony_key(&SHAPE, 6);
    honest.check(&matrices(&SHAPE)).unwrap();
    let at = honest.coefficients.len() / 3;
    let c = honest.coefficients[at];
    let matrix = if c.matrix == 0 { "A" } else { "B" };

    let mut changed = honest.clone();
    changed.coefficients[at].value += Fr::one();
    let message = refusal(changed);
    assert!(
        message.contains(&format!("constraint {}", c.constraint))
            && message.contains(&format!("{matrix} coefficient of wire {}", c.wire)),
        "{message}"
    );

    let mut dropped = honest.clone();
    dropped.coefficients.remove(at);
    assert!(refusal(dropped).contains("missing from the key"));

    let mut added = honest.clone();
    added.coefficients.push(Coefficient {
        constraint: 0,
        wire: (c.wire + 1) % 50,
        matrix: 1 - c.matrix,
        value: Fr::from(3u64),
    });
    let _ = refusal(added);

    // The same entry on another wire: wire order matters.
    let mut moved = honest.clone();
    moved.coefficients[at].wire = if c.wire == 0 { 1 } else { c.wire - 1 };
    let _ = refusal(moved);

    // snarkjs' rows binding the public inputs are part of the system.
    let mut unbound = honest.clone();
    unbound.coefficients.pop();
    let message = refusal(unbound);
    let last = matrices(&SHAPE);
    assert!(
        message.contains(&format!(
            "constraint {}",
            last.num_constraints + last.num_instance_variables - 1
        )),
        "{message}"
    );

    let mut other_domain = honest;
    other_domain.domain_size *= 2;
    assert!(refusal(other_domain).contains("domain"));
}

#[test]
fn bytes_that_are_not_a_zkey_are_refused_by_section() {
    for (bytes, expected) in [
        (&b"r1cs\x01\0\0\0"[..], "does not start with `zkey`"),
        (&b"zkey\x02\0\0\0\0\0\0\0"[..], "container version 2"),
        (&b"zkey\x01\0\0\0\0\0\0\0"[..], "section 1 is missing"),
        (
            &b"zkey\x01\0\0\0\x01\0\0\0\x01\0\0\0\x09\0\0\0\0\0\0\0\x01"[..],
            "section 1 is truncated",
        ),
    ] {
        let err = Zkey::read(bytes).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }
}

#[test]
fn the_r1cs_export_numbers_wires_as_the_prover_does() {
    let m = matrices(&SHAPE);
    let mut bytes = Vec::new();
    r1cs::write(&m, &mut bytes).unwrap();
    let file = R1csFile::<32>::read(bytes.as_slice()).unwrap();
    let wires = m.num_instance_variables + m.num_witness_variables;
    assert_eq!(file.header.n_wires as usize, wires);
    assert_eq!(file.header.n_pub_in as usize, m.num_instance_variables - 1);
    assert_eq!(file.header.n_pub_out + file.header.n_prvt_in, 0);
    assert_eq!(file.header.n_constraints as usize, m.num_constraints);
    assert_eq!(
        file.header.prime.as_bytes(),
        Fr::MODULUS.to_bytes_le().as_slice()
    );
    assert_eq!(file.map.0, (0..wires as u64).collect::<Vec<_>>());
    for (row, constraint) in file.constraints.0.iter().enumerate() {
        for (terms, matrix) in [&constraint.0, &constraint.1, &constraint.2]
            .into_iter()
            .zip(m.r1cs())
        {
            let expected: Vec<_> = matrix[row]
                .iter()
                .map(|(value, wire)| (r1cs::field_element(value), *wire as u32))
                .collect();
            assert_eq!(terms, &expected, "constraint {row}");
        }
    }
}

#[test]
fn a_key_without_a_phase_2_contribution_is_refused() {
    // snarkjs' `groth16 setup` writes gamma = delta = the generator; a node importing that
    // *_0000.zkey instead of the final one would prove with a delta everyone knows, and so
    // could prove "10 in [18, 255]". Made here with ark's generator and the same values.
    use ark_ec::{AffineRepr, CurveGroup};
    use ark_ff::UniformRand;
    let mut r = rng(11);
    let (alpha, beta) = (Fr::rand(&mut r), Fr::rand(&mut r));
    let generators = (
        ark_bn254::G1Affine::generator().into_group(),
        ark_bn254::G2Affine::generator().into_group(),
    );
    let uncontributed = Groth16::<Bn254, CircomReduction>::generate_parameters_with_qap(
        AttributeCircuit::blank(&SHAPE).unwrap(),
        alpha,
        beta,
        Fr::one(),
        Fr::one(),
        generators.0,
        generators.1,
        &mut r,
    )
    .unwrap();
    let err = zkey_of(&SHAPE, uncontributed.clone())
        .into_proving_key::<AttributeCircuit>(&SHAPE)
        .unwrap_err();
    assert!(err.to_string().contains("delta equals gamma"), "{err}");
    // Gamma left at the generator (as snarkjs does) but delta too: refused as well.
    let mut only_gamma = uncontributed.clone();
    only_gamma.vk.gamma_g2 = (generators.1 * Fr::from(3u8)).into_affine();
    let err = zkey_of(&SHAPE, only_gamma)
        .into_proving_key::<AttributeCircuit>(&SHAPE)
        .unwrap_err();
    assert!(
        err.to_string().contains("delta is the group generator"),
        "{err}"
    );
    // A contributed key whose G1 copy of delta is not its G2 copy.
    let mut mixed = ceremony_key(&SHAPE, 12);
    mixed.key.delta_g1 = (mixed.key.delta_g1 * Fr::from(2u8)).into_affine();
    let err = mixed
        .into_proving_key::<AttributeCircuit>(&SHAPE)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("copies of beta and delta disagree"),
        "{err}"
    );
    // An identity point among the input bases.
    let mut hollow = ceremony_key(&SHAPE, 13);
    hollow.key.vk.gamma_abc_g1[1] = ark_bn254::G1Affine::zero();
    let err = hollow
        .into_proving_key::<AttributeCircuit>(&SHAPE)
        .unwrap_err();
    assert!(err.to_string().contains("identity"), "{err}");
    // The honest ceremony key of the same shape is accepted.
    assert!(ceremony_key(&SHAPE, 14)
        .into_proving_key::<AttributeCircuit>(&SHAPE)
        .is_ok());
}
