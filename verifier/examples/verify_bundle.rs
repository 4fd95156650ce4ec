//! The verifier as a library, as a browser, a notebook or another service would embed it:
//! read a bundle, pin the keys (and the node key) you trust, verify, and read what the
//! verified answer says. No node, no network, no SQL engine.
//!
//! ```sh
//! cargo run -p zkfabric-verifier --example verify_bundle -- \
//!     verifier/tests/fixtures/grouped.zkf verifier/tests/fixtures/trusted-keys \
//!     "$(cat verifier/tests/fixtures/node-key)"
//! ```

use std::{error::Error, path::Path};

use zkfabric_verifier::{
    bundle, command,
    manifest::parse_ed25519_key,
    verify::{verify, KeyPins, PinnedKey, Trust},
};

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bundle_file, keys_file, node_key] = &args[..] else {
        return Err("usage: verify_bundle BUNDLE.zkf TRUSTED-KEYS NODE-KEY-HEX".into());
    };
    let bundle = bundle::read(Path::new(bundle_file))?;
    // What the verifier relies on, pinned by its user: keys per shape, and the node key.
    let keys = PinnedKey::parse_all(&std::fs::read_to_string(keys_file)?, keys_file)?;
    let trust = Trust {
        node_key: Some(parse_ed25519_key(node_key)?),
        ..Trust::keys(KeyPins::Pinned(keys.into_iter().collect()))
    };
    let report = verify(&bundle, &trust)?;
    println!(
        "{} epoch {}: {} proofs over all {} chunks hold",
        report.dataset, report.epoch, report.proofs, report.chunks
    );
    println!(
        "the proofs are about {}",
        report.query.in_words(&report.schema)
    );
    // The result table, as verified: released groups with their figures, suppressed
    // groups (fewer than k rows) with none.
    command::print_answer(&report.schema, &report.query, &bundle);
    Ok(())
}
