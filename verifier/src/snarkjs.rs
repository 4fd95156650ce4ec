//! Proofs in snarkjs' JSON formats, so that anyone can check a bundle's proofs with
//! snarkjs (`snarkjs groth16 verify verification_key.json public.json proof.json`) or the
//! verifier contracts and browser verifiers that read those files.
//!
//! Numbers are decimal strings; points are projective triples with `z = 1` (`["0", "1",
//! "0"]` is the point at infinity); G2 coordinates are `[c0, c1]` pairs. Only verified
//! statements are exported: their public inputs are the ones the offline verifier
//! recomputed.

use std::path::{Path, PathBuf};

use ark_bn254::{Bn254, Fq2, G1Affine, G2Affine};
use ark_ec::{pairing::Pairing, AffineRepr};
use serde_json::{json, Value};
use zkfabric_circuits::{
    snark::{Proof, VerifyingKey},
    Fr,
};

use crate::{
    files::{self, FileError},
    verify::Statement,
};

fn g1(point: &G1Affine) -> Value {
    match point.xy() {
        Some((x, y)) => json!([x.to_string(), y.to_string(), "1"]),
        None => json!(["0", "1", "0"]),
    }
}

fn fq2(value: &Fq2) -> Value {
    json!([value.c0.to_string(), value.c1.to_string()])
}

fn g2(point: &G2Affine) -> Value {
    match point.xy() {
        Some((x, y)) => json!([fq2(&x), fq2(&y), ["1", "0"]]),
        None => json!([["0", "0"], ["1", "0"], ["0", "0"]]),
    }
}

/// `verification_key.json`: the verifying key, with `e(α, β)` as snarkjs writes it.
pub fn verification_key(vk: &VerifyingKey) -> Value {
    let alpha_beta = Bn254::pairing(vk.alpha_g1, vk.beta_g2).0;
    let fq6 = |v: &ark_bn254::Fq6| json!([fq2(&v.c0), fq2(&v.c1), fq2(&v.c2)]);
    json!({
        "protocol": "groth16",
        "curve": "bn128",
        "nPublic": vk.gamma_abc_g1.len() - 1,
        "vk_alpha_1": g1(&vk.alpha_g1),
        "vk_beta_2": g2(&vk.beta_g2),
        "vk_gamma_2": g2(&vk.gamma_g2),
        "vk_delta_2": g2(&vk.delta_g2),
        "vk_alphabeta_12": [fq6(&alpha_beta.c0), fq6(&alpha_beta.c1)],
        "IC": vk.gamma_abc_g1.iter().map(g1).collect::<Vec<_>>(),
    })
}

/// `proof.json`.
pub fn proof(proof: &Proof) -> Value {
    json!({
        "pi_a": g1(&proof.a),
        "pi_b": g2(&proof.b),
        "pi_c": g1(&proof.c),
        "protocol": "groth16",
        "curve": "bn128",
    })
}

/// `public.json`: the public signals, in the circuit's order.
pub fn public_signals(inputs: &[Fr]) -> Value {
    json!(inputs.iter().map(|x| x.to_string()).collect::<Vec<_>>())
}

/// Writes each statement's three files under `dir/<statement name>/` (each file whole or
/// not at all). Returns the folders written.
pub fn write(statements: &[Statement], dir: &Path) -> Result<Vec<PathBuf>, FileError> {
    let mut folders = Vec::new();
    for statement in statements {
        let folder = dir.join(&statement.name);
        std::fs::create_dir_all(&folder).map_err(|e| FileError::at(&folder, e))?;
        for (name, value) in [
            (
                "verification_key.json",
                verification_key(&statement.verifying_key),
            ),
            ("proof.json", proof(&statement.proof)),
            ("public.json", public_signals(&statement.public_inputs)),
        ] {
            let path = folder.join(name);
            let text = serde_json::to_string_pretty(&value).expect("JSON values serialize");
            files::write_bytes_atomically(&path, text.as_bytes())?;
        }
        folders.push(folder);
    }
    Ok(folders)
}
