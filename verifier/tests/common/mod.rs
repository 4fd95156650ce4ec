//! The fixture bundles (`tests/fixtures/`, made by its `make.sh` with the zkfabric CLI)
//! and what a verifier pins for them.
#![allow(dead_code)]

use std::path::PathBuf;

use ed25519_dalek::{SigningKey, VerifyingKey};
use zkfabric_verifier::{
    bundle::{self, Bundle},
    manifest::{parse_ed25519_key, SignedManifest},
    verify::{KeyPins, PinnedKey, Trust},
};

/// The path of fixture `name`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Fixture bundle `name`, read as a verifier reads it.
pub fn bundle(name: &str) -> Bundle {
    bundle::read(&fixture(name)).unwrap()
}

/// The node key that signed the fixtures.
pub fn node_key() -> VerifyingKey {
    parse_ed25519_key(std::fs::read_to_string(fixture("node-key")).unwrap().trim()).unwrap()
}

/// The keys `zkfabric setup` made for the fixtures, as the fixtures' trusted-keys file
/// lists them.
pub fn trusted_keys() -> KeyPins {
    let text = std::fs::read_to_string(fixture("trusted-keys")).unwrap();
    KeyPins::Pinned(
        PinnedKey::parse_all(&text, "trusted-keys")
            .unwrap()
            .into_iter()
            .collect(),
    )
}

/// What a careful verifier of the fixtures pins: the trusted keys and the node key.
pub fn pinned() -> Trust {
    Trust {
        node_key: Some(node_key()),
        ..Trust::keys(trusted_keys())
    }
}

/// Every signed manifest of the fixtures' dataset, in epoch order (epochs 1 and 2).
pub fn chain() -> Vec<SignedManifest> {
    serde_json::from_slice(&std::fs::read(fixture("chain.json")).unwrap()).unwrap()
}

/// The key a test's dishonest node signs with. The verifier binds a bundle to a node key
/// only through the manifest's signature, so a node holding this key is any node.
pub fn dishonest_node() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// `trust` with the dishonest node's key pinned in place of the fixtures' node key.
pub fn pinning_dishonest(trust: Trust) -> Trust {
    Trust {
        node_key: Some(dishonest_node().verifying_key()),
        ..trust
    }
}

/// `bundle`'s manifest after `edit`, re-signed by the dishonest node: what a node can
/// always do to its own manifests.
pub fn resigned(
    bundle: &Bundle,
    edit: impl FnOnce(&mut zkfabric_verifier::manifest::Manifest),
) -> Bundle {
    let mut signed = bundle::manifest_from_proto(bundle.manifest.as_ref()).unwrap();
    edit(&mut signed.manifest);
    let mut out = bundle.clone();
    out.manifest =
        Some(bundle::manifest_to_proto(&signed.manifest.sign(&dishonest_node())).unwrap());
    out
}
