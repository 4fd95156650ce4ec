//! The `keys` commands: which keys a node holds and which shapes queries need, and the
//! ceremony's two ends (export a shape's constraint system, import the final key).

use std::path::Path;

use crate::{
    node::config::Config,
    node::keys::{self, KeyCache, KeyOrigin},
};
use anyhow::{Context, Result};

use super::{answer::planned, CostArgs};

fn origin(origin: KeyOrigin) -> &'static str {
    match origin {
        KeyOrigin::Development => "development",
        KeyOrigin::Ceremony => "ceremony",
    }
}

/// `zkfabric keys list`: fingerprint, origin, constraints and shape of every key held.
pub fn list(data_dir: &Path) -> Result<()> {
    for info in KeyCache::new(data_dir).infos()? {
        println!(
            "{}\t{}\t{}\t{}",
            info.fingerprint,
            origin(info.origin),
            info.constraints,
            info.shape
        );
    }
    Ok(())
}

/// `zkfabric keys shapes`: for each query, the shapes of the keys it can need (role, the
/// key held if any, description), tab-separated.
pub fn shapes(
    data_dir: &Path,
    config: &Config,
    sql: &[String],
    purpose: Option<String>,
    cost: &CostArgs,
) -> Result<()> {
    let keys = KeyCache::new(data_dir);
    for plan in planned(data_dir, config, sql, purpose, cost)? {
        for (role, description) in plan.key_shapes() {
            let held = keys
                .info(&description)
                .map_or("none", |info| origin(info.origin));
            println!("{role}\t{held}\t{description}");
        }
    }
    Ok(())
}

/// `zkfabric keys export-r1cs`.
pub fn export_r1cs(shape: &str, out: &Path) -> Result<()> {
    let matrices = keys::export_r1cs(shape, out)?;
    let rows = matrices.num_constraints + matrices.num_instance_variables;
    let power = rows.next_power_of_two().trailing_zeros();
    println!(
        "wrote {}: {} constraints, {} wires, {} public inputs",
        out.display(),
        matrices.num_constraints,
        matrices.num_instance_variables + matrices.num_witness_variables,
        matrices.num_instance_variables - 1
    );
    println!(
        "phase 2 needs a powers-of-tau transcript of at least 2^{power}: \
         snarkjs groth16 setup {} POT.ptau FILE.zkey",
        out.display()
    );
    Ok(())
}

/// `zkfabric keys import`: prints the trusted-keys line of the installed key.
pub fn import(data_dir: &Path, zkey: &Path, shape: &str) -> Result<()> {
    let bytes = std::fs::read(zkey).with_context(|| format!("reading {}", zkey.display()))?;
    let info = KeyCache::new(data_dir)
        .import(shape, &bytes)
        .with_context(|| format!("{}: refused", zkey.display()))?;
    eprintln!(
        "installed the ceremony key of {} ({} constraints)",
        info.shape, info.constraints
    );
    println!("{} {}", info.fingerprint, info.shape);
    Ok(())
}
