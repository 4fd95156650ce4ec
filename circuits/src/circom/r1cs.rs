//! A shape's constraint system as an iden3 `.r1cs` file, what snarkjs' `groth16 setup`
//! takes to start a circuit's phase 2.
//!
//! Wires are numbered exactly as the prover's variables: wire 0 is the constant `1`, then
//! the public inputs in allocation order (declared as public inputs, none as outputs),
//! then the witness variables. A ceremony's key then fits the prover's assignment as is,
//! and the public signals snarkjs expects are the proof's public inputs in order.

use std::io::{self, Write};

use ark_ff::{BigInteger, PrimeField};
use r1cs_file::{Constraint, Constraints, FieldElement, Header, R1csFile, WireMap};

use crate::{snark::ConstraintMatrices, Fr};

/// The bytes of a BN254 scalar field element: little-endian, standard form (as `.r1cs`
/// files hold them).
pub fn field_element(value: &Fr) -> FieldElement<32> {
    little_endian(value.into_bigint())
}

fn little_endian(value: impl BigInteger) -> FieldElement<32> {
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(&value.to_bytes_le());
    FieldElement::from(bytes)
}

/// The `.r1cs` file of `matrices`.
pub fn r1cs_file(matrices: &ConstraintMatrices) -> R1csFile<32> {
    let wires = matrices.num_instance_variables + matrices.num_witness_variables;
    let [a, b, c] = [0, 1, 2].map(|m| &matrices.r1cs()[m]);
    let terms = |row: &[(Fr, usize)]| -> Vec<(FieldElement<32>, u32)> {
        row.iter()
            .map(|(coefficient, wire)| (field_element(coefficient), *wire as u32))
            .collect()
    };
    R1csFile {
        header: Header {
            prime: little_endian(Fr::MODULUS),
            n_wires: wires as u32,
            n_pub_out: 0,
            n_pub_in: (matrices.num_instance_variables - 1) as u32,
            n_prvt_in: 0,
            n_labels: wires as u64,
            n_constraints: matrices.num_constraints as u32,
        },
        constraints: Constraints(
            (0..matrices.num_constraints)
                .map(|i| Constraint(terms(&a[i]), terms(&b[i]), terms(&c[i])))
                .collect(),
        ),
        map: WireMap((0..wires as u64).collect()),
    }
}

/// Writes the `.r1cs` file of `matrices` to `out`.
pub fn write(matrices: &ConstraintMatrices, out: impl Write) -> io::Result<()> {
    if matrices.num_instance_variables + matrices.num_witness_variables > u32::MAX as usize {
        return Err(io::Error::other("more wires than an .r1cs file can number"));
    }
    r1cs_file(matrices).write(out)
}
