//! The offline verifier: checks an answer bundle with no network and no data directory.
//!
//! In order: the manifest's signature (against a pinned node key when given), the schema
//! against the manifest's schema hash, the query against the schema, the verifying keys
//! against their fingerprints and the pinned (fingerprint, shape) pairs, coverage (every
//! chunk of the epoch is proven, once, in order, each under the dataset id, index and row
//! count the manifest lists, no commitment listed twice), the result table against the
//! query, the challenge (recomputed from the query, the totals' commitment and every
//! chunk commitment), and finally every proof against public inputs recomputed from
//! manifest, query, challenge and result, batch-verified per key. Each statement begins with the digest of the
//! shape the verifier derived from the query, so a proof made under a key of another
//! shape fails even when that key is trusted too. This module uses only the circuits, the protobuf
//! messages and the pure query types: no DataFusion, no store.

use std::collections::{HashMap, HashSet};

use ed25519_dalek::VerifyingKey as NodeKey;
use rand::rngs::OsRng;
use zkfabric_circuits::{
    aggregate::{AggregateInstance, ChunkId},
    combine::{
        challenge, empty_slot_commitment, CombineInstance, CombineOutput, CombineResult,
        CombineShape, GroupAnswer, GroupNoisy, GroupRelease, TotalsClaim,
    },
    snark::{self, Proof, VerifyingKey},
    Fr,
};
use zkfabric_proto::v1 as pb;

mod sealing;

pub use sealing::{sealing_statements, verify_sealing, SealingPublic, SealingStatement};

use crate::{
    bundle::{self, fr_from_bytes, Bundle, BundleError, FORMAT},
    ledger,
    manifest::SignedManifest,
    manifest::{fr_from_hex, fr_to_hex, Backing},
    privacy::{nonce_element, query_hash, Cost, NoisePlan},
    query::{Aggregand, OutputKind, ProvableQuery},
    schema::Schema,
};

/// What the verifier trusts beyond the bundle, and what its user asked.
#[derive(Clone, Debug)]
pub struct Trust {
    /// The node key manifests must be signed with.
    pub node_key: Option<NodeKey>,
    /// The verifying keys proofs may be checked with.
    pub keys: KeyPins,
    /// What the answer must be about; a bundle about anything else is refused.
    pub expected: Expected,
    /// Privacy ledgers as the verifier obtained them (`zkfabric ledger --json`,
    /// `Catalog.GetLedger`): a dp bundle's charge must stand in its dataset's ledger at
    /// its position, and that ledger's chain must check.
    pub ledgers: Option<Vec<pb::Ledger>>,
}

impl Trust {
    /// Trust in the keys `keys` and nothing else: any node key, no expectations.
    pub fn keys(keys: KeyPins) -> Self {
        Self {
            node_key: None,
            keys,
            expected: Expected::default(),
            ledgers: None,
        }
    }
}

/// The researcher's side of the question: what they asked for. The node chooses none of
/// these; a bundle that answers with other values is refused, naming the field.
#[derive(Clone, Debug, Default)]
pub struct Expected {
    /// The epoch asked about.
    pub epoch: Option<u64>,
    /// The consent purpose asked for.
    pub purpose: Option<String>,
    /// The minimum group size the researcher accepts (the bundle's must equal it).
    pub min_group_size: Option<u64>,
    /// The privacy cost the researcher asked to spend (a dp bundle's must equal it).
    pub cost: Option<Cost>,
    /// The latest manifest the verifier knows of, and the manifests leading to it: the
    /// bundle's epoch must lie on that chain (not on a fork), and the report says how
    /// many epochs behind it is.
    pub head: Option<ManifestHead>,
}

/// The head of a dataset's manifest chain as a verifier learned it (for example from
/// `zkfabric catalog show`), with the signed manifests after the bundle's epoch up to it.
#[derive(Clone, Debug)]
pub struct ManifestHead {
    /// `sha256:...` of the latest manifest.
    pub hash: String,
    /// Manifests of later epochs than the bundle's, up to the head, in any order; more
    /// are ignored.
    pub later: Vec<SignedManifest>,
}

/// Which verifying keys a verifier accepts.
#[derive(Clone, Debug)]
pub enum KeyPins {
    /// Keys from a trusted setup, each for the one shape it is listed with: a key
    /// verifies only statements of that shape.
    Pinned(HashSet<PinnedKey>),
    /// Whatever keys the bundle carries. Whoever made them can prove anything, so the
    /// answer is then unverified; a caller must choose this explicitly.
    Unpinned,
}

/// One trusted verifying key: its fingerprint and the canonical description of the
/// shape it was made for, as `setup` and `keys import` print them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PinnedKey {
    /// `sha256:` and 64 hex digits.
    pub fingerprint: String,
    /// The shape's canonical description.
    pub shape: String,
}

impl PinnedKey {
    /// Reads a trusted-keys text: one `sha256:<64 hex> <shape description>` per line, as
    /// `zkfabric setup` and `zkfabric keys import` print them; `#` starts a comment.
    /// `source` names the text in errors (a file name), which name the line at fault.
    pub fn parse_all(text: &str, source: &str) -> Result<Vec<PinnedKey>, String> {
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = || format!("{source} line {}", n + 1);
            let (fingerprint, shape) = line.split_once(char::is_whitespace).ok_or_else(|| {
                format!(
                    "{}: a fingerprint without the shape it is trusted for; a line is \
                     `sha256:... SHAPE`, as `zkfabric setup` and `keys import` print it",
                    at()
                )
            })?;
            let hex_digits = fingerprint.strip_prefix("sha256:").unwrap_or_default();
            if hex_digits.len() != 64 || !hex_digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "{}: {fingerprint:?} is not a sha256: fingerprint",
                    at()
                ));
            }
            out.push(PinnedKey {
                fingerprint: fingerprint.to_string(),
                shape: shape.trim().to_string(),
            });
        }
        Ok(out)
    }
}

/// Why a bundle does not verify: the first check that failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A field is missing or malformed.
    #[error(transparent)]
    Malformed(#[from] BundleError),
    /// The manifest's signature does not hold, or is not the trusted node's.
    #[error("manifest: {0}")]
    Manifest(String),
    /// A check failed; the message names it.
    #[error("{0}")]
    Failed(String),
    /// A proof does not verify.
    #[error("proofs: {0}")]
    Proofs(String),
}

fn failed<T>(message: impl Into<String>) -> Result<T, VerifyError> {
    Err(VerifyError::Failed(message.into()))
}

/// What a verified bundle says, for the human summary.
#[derive(Clone, Debug)]
pub struct Report {
    /// Dataset and epoch.
    pub dataset: String,
    /// The epoch.
    pub epoch: u64,
    /// The node key that signed the manifest (hex).
    pub node_key: String,
    /// Chunks in the epoch, every one proven (cell chunks, for an answer from a roll-up).
    pub chunks: usize,
    /// The roll-up the answer came from, with its number of sealings (each proven).
    pub rollup: Option<(String, usize)>,
    /// Who vouches for the epoch's rows, as its signed manifest states.
    pub backing: Backing,
    /// Proofs checked.
    pub proofs: usize,
    /// Whether the verifying keys were pinned by `--trusted-keys`.
    pub keys_pinned: bool,
    /// The minimum group size the combine proofs enforced (threshold-only answers).
    pub min_group_size: u64,
    /// `dp` or `threshold-only`, as the manifest states.
    pub mode: String,
    /// A dp answer's noise and its charge in the dataset's privacy ledger.
    pub noise: Option<(NoisePlan, pb::LedgerEntry)>,
    /// Whether the charge was found at its position in a ledger the verifier gave.
    pub charge_in_ledger: bool,
    /// Epochs between the bundle's and the pinned head (0: the bundle's is the head);
    /// `None` when no head was given.
    pub epochs_behind: Option<u64>,
    /// The query as verified.
    pub query: ProvableQuery,
    /// The schema.
    pub schema: Schema,
    /// Every proof, with the statement it was verified against.
    pub statements: Vec<Statement>,
}

/// One verified proof: which it is, its circuit shape and key, and the public inputs it
/// was verified against (recomputed from manifest, query and result, never read from
/// the bundle).
#[derive(Clone, Debug)]
pub struct Statement {
    /// `chunk-<index>`, `subtotal-<n>` or `root`.
    pub name: String,
    /// The circuit shape's canonical description.
    pub shape: String,
    /// The verifying key.
    pub verifying_key: VerifyingKey,
    /// The public inputs.
    pub public_inputs: Vec<Fr>,
    /// The proof.
    pub proof: Proof,
}

/// Verifies `bundle` under `trust`.
pub fn verify(bundle: &Bundle, trust: &Trust) -> Result<Report, VerifyError> {
    if bundle.format != FORMAT {
        return failed(format!(
            "bundle format {} (this verifier reads format {FORMAT})",
            bundle.format
        ));
    }
    // The manifest, signed by the node.
    let signed = bundle::manifest_from_proto(bundle.manifest.as_ref())?;
    signed
        .verify(trust.node_key.as_ref())
        .map_err(|e| VerifyError::Manifest(e.to_string()))?;
    let manifest = &signed.manifest;
    let epochs_behind = trust
        .expected
        .head
        .as_ref()
        .map(|head| epochs_behind(&signed, head))
        .transpose()?;
    if manifest.dataset != bundle.dataset || manifest.epoch != bundle.epoch {
        return failed(format!(
            "the bundle is about {} epoch {}, its manifest about {} epoch {}",
            bundle.dataset, bundle.epoch, manifest.dataset, manifest.epoch
        ));
    }
    // The schema the manifest names.
    let schema = Schema::parse(&format!("{} (bundle)", bundle.dataset), &bundle.schema)
        .map_err(|e| VerifyError::Failed(format!("schema: {e}")))?;
    if schema.hash() != manifest.schema_hash || schema.name != manifest.dataset {
        return failed("schema: it is not the schema the manifest names");
    }
    if schema.chunk_rows != manifest.chunk_rows || schema.id != manifest.dataset_id {
        return failed("schema: chunk size or dataset id differ from the manifest's");
    }
    // The privacy mode the manifest states, and the schema declares.
    if manifest.privacy != schema.privacy.mode()
        || manifest.noise_commitment.is_some() != (manifest.privacy == "dp")
    {
        return failed(format!(
            "privacy: the manifest states mode {:?}{}, the schema declares {:?}",
            manifest.privacy,
            if manifest.noise_commitment.is_some() {
                " with a noise commitment"
            } else {
                " without a noise commitment"
            },
            schema.privacy.mode()
        ));
    }
    let privacy = bundle.privacy.as_ref().ok_or_else(|| BundleError {
        field: "privacy".into(),
        message: "missing".into(),
    })?;
    if privacy.mode != manifest.privacy {
        return failed(format!(
            "privacy: the bundle says mode {:?}, the manifest {:?}",
            privacy.mode, manifest.privacy
        ));
    }
    let cost = match manifest.noise_commitment {
        Some(_) => Some(
            Cost::new(privacy.epsilon, privacy.delta)
                .map_err(|e| VerifyError::Failed(format!("privacy: {e}")))?,
        ),
        None => None,
    };

    // The query and the circuits it means.
    let (query, limits) = bundle::query_from_proto(bundle.query.as_ref())?;
    check_expected(
        &trust.expected,
        manifest.epoch,
        &query,
        limits.min_group_size,
        cost,
    )?;
    let circuits = query
        .circuit(&schema, &limits, cost)
        .map_err(|e| VerifyError::Failed(format!("query: {e}")))?;
    // An answer from a roll-up: the same query over its cells.
    let rollup = match bundle.rollup.as_str() {
        "" if bundle.sealing_proofs.is_empty() => None,
        "" => return failed("an answer from the rows carries sealing proofs"),
        name => Some(schema.rollups.iter().find(|r| r.name == name).ok_or_else(|| {
            VerifyError::Failed(format!("the bundle is answered from roll-up `{name}`, which the schema does not declare"))
        })?),
    };
    let circuits = match rollup {
        None => circuits,
        Some(r) => circuits
            .over_rollup(&schema, r)
            .map_err(|e| VerifyError::Failed(format!("query: {e}")))?,
    };
    check_outputs(&query)?;
    let noise = match (&circuits.noise, &manifest.noise_commitment) {
        (Some(plan), Some(commitment)) => {
            let commitment = fr_from_hex(commitment).ok_or_else(|| {
                VerifyError::Failed("manifest: the noise commitment is not a field element".into())
            })?;
            let signer = crate::manifest::parse_ed25519_key(&signed.node_key)
                .map_err(VerifyError::Manifest)?;
            let query_proto = bundle.query.as_ref().expect("decoded above");
            let seed = check_privacy(bundle, privacy, plan, &query, query_proto, &signer)?;
            if let Some(ledgers) = &trust.ledgers {
                check_in_ledger(bundle, privacy, ledgers, &signer)?;
            }
            Some((plan, commitment, seed))
        }
        _ => {
            if *privacy
                != (pb::Privacy {
                    mode: privacy.mode.clone(),
                    ..Default::default()
                })
            {
                return failed("privacy: a threshold-only bundle carries noise terms");
            }
            None
        }
    };

    // Verifying keys, by the shape they must be for.
    let keys: HashMap<&str, &pb::VerifyingKey> = bundle
        .verifying_keys
        .iter()
        .map(|k| (k.shape.as_str(), k))
        .collect();
    let key_for = |shape: String| -> Result<VerifyingKey, VerifyError> {
        let entry = keys
            .get(shape.as_str())
            .ok_or_else(|| VerifyError::Failed(format!("no verifying key for {shape}")))?;
        let vk = snark::verifying_key_from_bytes(&entry.key)
            .map_err(|e| VerifyError::Failed(format!("verifying key for {shape}: {e}")))?;
        let fingerprint = snark::fingerprint(&vk);
        if fingerprint != entry.fingerprint {
            return failed(format!(
                "verifying key for {shape}: its fingerprint is {fingerprint}, the bundle says {}",
                entry.fingerprint
            ));
        }
        if let KeyPins::Pinned(trusted) = &trust.keys {
            let pin = PinnedKey {
                fingerprint,
                shape: shape.clone(),
            };
            if !trusted.contains(&pin) {
                let other_shape = trusted.iter().any(|t| t.fingerprint == pin.fingerprint);
                return failed(format!(
                    "verifying key {} for {shape} is not among the trusted keys{}",
                    pin.fingerprint,
                    if other_shape {
                        " (it is trusted for another shape only)"
                    } else {
                        ""
                    }
                ));
            }
        }
        Ok(vk)
    };

    // Coverage: every chunk of the epoch, each proven once, in order, under the dataset
    // id, index and row count the manifest lists (the commitment binds them); from a
    // roll-up, every cell chunk of every sealing the manifest lists for it, in order,
    // under the roll-up's table id, each sealing proven to hold its chunks' rows.
    let rows_touched = manifest_chunks(manifest)?;
    manifest
        .check_rollups()
        .map_err(|e| VerifyError::Failed(format!("manifest: {e}")))?;
    let mut sealing_statements = Vec::new();
    let touched = match rollup {
        None => rows_touched,
        Some(r) => {
            let entry = manifest
                .rollups
                .iter()
                .find(|e| e.name == r.name)
                .ok_or_else(|| {
                    VerifyError::Failed(format!("the manifest lists no roll-up `{}`", r.name))
                })?;
            let positions: Vec<u32> = bundle.sealing_proofs.iter().map(|p| p.sealing).collect();
            let wanted: Vec<u32> = (0..entry.sealings.len() as u32).collect();
            if positions != wanted || bundle.sealing_proofs.iter().any(|p| p.rollup != r.name) {
                return failed(format!(
                    "coverage: roll-up `{}` has {} sealings in this epoch; the bundle proves \
                     sealings {positions:?}",
                    r.name,
                    entry.sealings.len()
                ));
            }
            for sealed in &bundle.sealing_proofs {
                sealing_statements.extend(sealing::sealing_statements(&schema, manifest, sealed)?);
            }
            let table = schema.cells_table_id(r);
            entry
                .sealings
                .iter()
                .flat_map(|s| &s.cells)
                .map(|c| {
                    let commitment = fr_from_hex(&c.commitment).ok_or_else(|| {
                        VerifyError::Failed(format!(
                            "manifest: cell chunk {} commitment malformed",
                            c.index
                        ))
                    })?;
                    let id = ChunkId {
                        dataset_id: table,
                        index: c.index,
                        rows: c.rows,
                    };
                    Ok((id, commitment))
                })
                .collect::<Result<Vec<_>, VerifyError>>()?
        }
    };
    let proven: Vec<u64> = bundle.chunk_proofs.iter().map(|p| p.chunk).collect();
    let wanted: Vec<u64> = touched.iter().map(|(id, _)| id.index).collect();
    if proven != wanted {
        return failed(format!(
            "coverage: the epoch has chunks {wanted:?}, the bundle proves {proven:?}"
        ));
    }

    // The challenge every chunk proof takes: drawn after the totals' commitment, the query
    // and every chunk commitment, so none of them can be chosen knowing it.
    let totals_commitment = fr_from_bytes(&bundle.totals_commitment, "totals_commitment")?;
    let commitments: Vec<Fr> = touched.iter().map(|(_, c)| *c).collect();
    let challenge = challenge(
        &circuits.chunk_shape,
        &circuits.chunk_query,
        &circuits.root_shape,
        totals_commitment,
        &commitments,
    );

    // Chunk statements.
    let chunk_shape = circuits.chunk_shape.description();
    let chunk_vk = key_for(chunk_shape.clone())?;
    let mut names = Vec::new();
    let mut chunk_statements = Vec::new();
    let mut level = Vec::new();
    for (i, (p, (chunk, commitment))) in bundle.chunk_proofs.iter().zip(&touched).enumerate() {
        let evaluation_commitment = fr_from_bytes(
            &p.evaluation_commitment,
            &format!("chunk_proofs[{i}].evaluation_commitment"),
        )?;
        let inputs = AggregateInstance {
            chunk_commitment: *commitment,
            chunk: *chunk,
            query: circuits.chunk_query.clone(),
            challenge,
            evaluation_commitment,
        }
        .public_inputs(&circuits.chunk_shape)
        .map_err(|e| VerifyError::Failed(format!("query: {e}")))?;
        chunk_statements.push((
            inputs,
            proof(&p.proof, &format!("chunk_proofs[{i}].proof"))?,
        ));
        names.push(format!("chunk-{}", p.chunk));
        level.push(evaluation_commitment);
    }

    // The combine tree: subtotal levels while more than K commitments remain, then the root.
    let fan_in = limits.combine_inputs;
    let mut combines = bundle.combine_proofs.iter().enumerate();
    let subtotal_shape = CombineShape::subtotal(fan_in);
    let (subtotal_statements, level) =
        subtotal_tree(level, fan_in, fan_in, &mut combines, "combine_proofs")?;
    let mut level = level;
    level.resize(fan_in, empty_slot_commitment());
    let (i, root) = combines
        .next()
        .ok_or_else(|| VerifyError::Failed("combine tree: the root proof is missing".into()))?;
    if combines.next().is_some() {
        return failed("combine tree: more combine proofs than the tree has");
    }
    if !root.subtotal.is_empty() {
        return failed("combine tree: the root outputs a subtotal");
    }
    let result = root_result(
        &schema,
        bundle.result.as_ref(),
        &query,
        &circuits,
        noise.map(|(plan, commitment, (q, n))| (plan.clone(), commitment, q, n)),
    )?;
    let root_inputs = CombineInstance {
        input_commitments: level,
        totals: Some(TotalsClaim {
            challenge,
            commitment: totals_commitment,
        }),
        result,
    }
    .public_inputs(&circuits.root_shape)
    .map_err(|e| VerifyError::Failed(format!("result: {e}")))?;
    let root_proof = proof(&root.proof, &format!("combine_proofs[{i}].proof"))?;

    // The proofs, one batch (one multi-pairing) per verifying key.
    let root_shape = circuits.root_shape.description();
    let root_vk = key_for(root_shape.clone())?;
    names.extend((0..subtotal_statements.len()).map(|n| format!("subtotal-{n}")));
    names.push("root".into());
    let mut batches = vec![
        ("chunk", chunk_shape, chunk_vk, chunk_statements),
        (
            "root combine",
            root_shape,
            root_vk,
            vec![(root_inputs, root_proof)],
        ),
    ];
    if !subtotal_statements.is_empty() {
        let shape = subtotal_shape.description();
        let vk = key_for(shape.clone())?;
        // Listed in bundle order: chunks, subtotals, root.
        batches.insert(1, ("subtotal combine", shape, vk, subtotal_statements));
    }
    // Then the sealings' proofs, a batch per shape.
    let mut sealing_shapes: Vec<String> = Vec::new();
    for (_, shape, ..) in &sealing_statements {
        if !sealing_shapes.contains(shape) {
            sealing_shapes.push(shape.clone());
        }
    }
    for shape in sealing_shapes {
        let vk = key_for(shape.clone())?;
        let (named, statements): (Vec<String>, Vec<(Vec<Fr>, Proof)>) = sealing_statements
            .iter()
            .filter(|(_, s, ..)| *s == shape)
            .map(|(name, _, inputs, p)| (name.clone(), (inputs.clone(), p.clone())))
            .unzip();
        names.extend(named);
        batches.push(("sealing", shape, vk, statements));
    }
    // The bundle carries the keys its proofs need, each once, and nothing else.
    let needed: HashSet<&str> = batches
        .iter()
        .map(|(_, shape, ..)| shape.as_str())
        .collect();
    if let Some(extra) = bundle
        .verifying_keys
        .iter()
        .find(|k| !needed.contains(k.shape.as_str()))
    {
        return failed(format!(
            "verifying keys: the bundle carries a key for {}, which none of its proofs needs",
            extra.shape
        ));
    }
    if keys.len() != bundle.verifying_keys.len() {
        return failed("verifying keys: the bundle carries a shape's key twice");
    }
    let mut proofs = 0;
    for (what, _, vk, statements) in &batches {
        proofs += statements.len();
        if statements.is_empty() {
            continue;
        }
        let ok = snark::batch_verify(vk, statements, &mut OsRng)
            .map_err(|e| VerifyError::Proofs(format!("{what} proofs: {e}")))?;
        if !ok {
            return Err(VerifyError::Proofs(format!(
                "the {what} proofs do not verify against the manifest, query and result"
            )));
        }
    }
    let statements = batches
        .into_iter()
        .flat_map(|(_, shape, vk, statements)| {
            statements.into_iter().map(move |(public_inputs, proof)| {
                (shape.clone(), vk.clone(), public_inputs, proof)
            })
        })
        .zip(names)
        .map(
            |((shape, verifying_key, public_inputs, proof), name)| Statement {
                name,
                shape,
                verifying_key,
                public_inputs,
                proof,
            },
        )
        .collect();
    Ok(Report {
        statements,
        dataset: bundle.dataset.clone(),
        epoch: bundle.epoch,
        node_key: signed.node_key.clone(),
        chunks: touched.len(),
        rollup: rollup.map(|r| (r.name.clone(), bundle.sealing_proofs.len())),
        backing: manifest.backing(),
        proofs,
        keys_pinned: matches!(trust.keys, KeyPins::Pinned(_)),
        min_group_size: limits.min_group_size,
        mode: manifest.privacy.clone(),
        charge_in_ledger: noise.is_some() && trust.ledgers.is_some(),
        noise: noise.map(|(plan, ..)| (plan.clone(), privacy.charge.clone().unwrap_or_default())),
        epochs_behind,
        query,
        schema,
    })
}

/// Checks that a dp bundle's charge stands at its position in its dataset's ledger among
/// `ledgers`, and that the ledger's chain checks: a node cannot leave an answer's cost out
/// of the ledger everyone reads.
fn check_in_ledger(
    bundle: &Bundle,
    privacy: &pb::Privacy,
    ledgers: &[pb::Ledger],
    signer: &NodeKey,
) -> Result<(), VerifyError> {
    let charge = privacy.charge.as_ref().expect("checked before");
    let ledger = ledgers
        .iter()
        .find(|l| l.dataset == bundle.dataset)
        .ok_or_else(|| {
            VerifyError::Failed(format!(
                "privacy: the ledgers given hold none of {}",
                bundle.dataset
            ))
        })?;
    ledger::check_chain(&ledger.dataset, &ledger.entries, signer)
        .map_err(|e| VerifyError::Failed(format!("privacy: the ledger given: {e}")))?;
    let at = usize::try_from(charge.seq.saturating_sub(1)).unwrap_or(usize::MAX);
    if ledger.entries.get(at) != Some(charge) {
        return failed(format!(
            "privacy: the bundle's charge, ledger entry {}, is missing from the ledger given \
             ({} entries)",
            charge.seq,
            ledger.entries.len()
        ));
    }
    Ok(())
}

/// Checks a dp bundle's noise terms against the plan recomputed from schema, query and
/// cost, and its ledger charge: signed by the node, for this dataset, epoch, query,
/// nonce, cost and purpose, within the budget. Returns the query hash and nonce that key
/// the noise.
fn check_privacy(
    bundle: &Bundle,
    privacy: &pb::Privacy,
    plan: &NoisePlan,
    query: &ProvableQuery,
    query_proto: &pb::ProvableQuery,
    signer: &NodeKey,
) -> Result<(Fr, Fr), VerifyError> {
    let plan_sum_steps: Vec<String> = plan.sum_steps.iter().map(u128::to_string).collect();
    if privacy.coins != plan.coins
        || privacy.count_step != plan.count_step
        || privacy.sum_steps != plan_sum_steps
        || privacy.threshold != plan.threshold
    {
        return failed(format!(
            "privacy: the bundle's noise terms (coins {}, steps {} and {:?}, threshold {}) \
             are not those the cost and the schema's unit bounds give (coins {}, steps {} \
             and {:?}, threshold {})",
            privacy.coins,
            privacy.count_step,
            privacy.sum_steps,
            privacy.threshold,
            plan.coins,
            plan.count_step,
            plan_sum_steps,
            plan.threshold
        ));
    }
    let nonce =
        nonce_element(&privacy.nonce).map_err(|e| VerifyError::Failed(format!("privacy: {e}")))?;
    let hash = query_hash(&bundle.dataset, bundle.epoch, query_proto, plan.cost);
    let charge = privacy.charge.as_ref().ok_or_else(|| {
        VerifyError::Failed("privacy: the bundle carries no ledger charge".into())
    })?;
    ledger::check_signature(charge, signer)
        .map_err(|e| VerifyError::Failed(format!("privacy: {e}")))?;
    let differs = [
        ("dataset", charge.dataset != bundle.dataset),
        ("epoch", charge.epoch != bundle.epoch),
        ("query hash", charge.query_hash != fr_to_hex(&hash)),
        ("nonce", charge.nonce != privacy.nonce),
        ("epsilon", charge.epsilon != plan.cost.epsilon),
        ("delta", charge.delta != plan.cost.delta),
        ("purpose", charge.purpose != query.purpose),
    ];
    if let Some((field, _)) = differs.iter().find(|(_, d)| *d) {
        return failed(format!(
            "privacy: ledger entry {} is another answer's charge (its {field} differs)",
            charge.seq
        ));
    }
    if charge.spent_epsilon > charge.budget_epsilon || charge.spent_delta > charge.budget_delta {
        return failed(format!(
            "privacy: ledger entry {} spends beyond the dataset's budget",
            charge.seq
        ));
    }
    Ok((hash, nonce))
}

/// How many epochs `signed` (already verified) lies behind `head`, following each later
/// manifest's `previous` link from it: they must be signed by the same node key, of the
/// same dataset, one epoch apart, and end at the head's hash. A bundle whose manifest is
/// not on that chain (a fork: two manifests for one epoch) is refused.
fn epochs_behind(signed: &SignedManifest, head: &ManifestHead) -> Result<u64, VerifyError> {
    let mut current = signed.manifest.hash();
    let mut epoch = signed.manifest.epoch;
    let mut behind = 0;
    while current != head.hash {
        let following = epoch
            .checked_add(1)
            .ok_or_else(|| VerifyError::Failed("manifest head: no epoch follows".into()))?;
        let next = head
            .later
            .iter()
            .find(|m| {
                m.manifest.dataset == signed.manifest.dataset && m.manifest.epoch == following
            })
            .ok_or_else(|| {
                VerifyError::Failed(format!(
                    "manifest head: the chain from the bundle's epoch {} to the head {} lacks \
                     epoch {} (pass the manifests in between with --manifest-chain FILE, as \
                     `zkfabric catalog chain` writes them, or use `zkfabric verify --remote`)",
                    signed.manifest.epoch, head.hash, following
                ))
            })?;
        if next.node_key != signed.node_key {
            return failed(format!(
                "manifest head: epoch {} is signed by another node key",
                following
            ));
        }
        next.verify(None)
            .map_err(|e| VerifyError::Manifest(format!("epoch {}: {e}", following)))?;
        if next.manifest.previous.as_deref() != Some(current.as_str()) {
            return failed(format!(
                "manifest head: the bundle's epoch-{} manifest {} is not on the chain that \
                 ends at {} (epoch {} follows another manifest: a fork)",
                signed.manifest.epoch,
                signed.manifest.hash(),
                head.hash,
                following
            ));
        }
        current = next.manifest.hash();
        epoch = following;
        behind += 1;
    }
    Ok(behind)
}

/// The bundle answers what was asked: epoch, purpose and k as the researcher expects.
fn check_expected(
    expected: &Expected,
    epoch: u64,
    query: &ProvableQuery,
    min_group_size: u64,
    cost: Option<Cost>,
) -> Result<(), VerifyError> {
    if let Some(e) = expected.epoch.filter(|e| *e != epoch) {
        return failed(format!(
            "epoch: the bundle answers over epoch {epoch}, not {e}"
        ));
    }
    if let Some(p) = expected.purpose.as_ref().filter(|p| **p != query.purpose) {
        return failed(format!(
            "purpose: the bundle counts rows consented to {:?}, not {p:?}",
            query.purpose
        ));
    }
    if let Some(k) = expected.min_group_size.filter(|k| *k != min_group_size) {
        return failed(format!(
            "min_group_size: the bundle suppresses groups below {min_group_size} rows, not {k}"
        ));
    }
    if let Some(asked) = expected.cost.filter(|c| Some(*c) != cost) {
        return failed(match cost {
            Some(c) => format!(
                "privacy: the bundle spends epsilon {} and delta {:e}, not {} and {:e}",
                c.epsilon, c.delta, asked.epsilon, asked.delta
            ),
            None => "privacy: the bundle is threshold-only (exact), not differentially private"
                .to_string(),
        });
    }
    Ok(())
}

/// The manifest's chunks with what each chunk proof must be about: indices strictly
/// increasing, no commitment listed twice (one chunk under two indices would count its
/// rows twice; the commitment binds its index, so such a manifest could not be proven,
/// but it is refused here by name).
fn manifest_chunks(
    manifest: &crate::manifest::Manifest,
) -> Result<Vec<(ChunkId, Fr)>, VerifyError> {
    let mut seen = HashSet::new();
    let mut previous: Option<u64> = None;
    manifest
        .chunks
        .iter()
        .map(|c| {
            let commitment = fr_from_hex(&c.commitment).ok_or_else(|| {
                VerifyError::Failed(format!("manifest: chunk {} commitment malformed", c.index))
            })?;
            if previous.is_some_and(|p| p >= c.index) {
                return failed(format!(
                    "manifest: chunk {} is listed after chunk {}: indices must increase",
                    c.index,
                    previous.unwrap_or_default()
                ));
            }
            if !seen.insert(c.commitment.as_str()) {
                return failed(format!(
                    "manifest: chunk {}'s commitment {} is listed twice",
                    c.index, c.commitment
                ));
            }
            previous = Some(c.index);
            let id = ChunkId {
                dataset_id: manifest.dataset_id,
                index: c.index,
                rows: c.rows,
            };
            Ok((id, commitment))
        })
        .collect()
}

/// The subtotal levels of a combine tree over `level` (evaluation commitments): while
/// more than `until` remain, each `fan_in` of them (the last group padded with empty
/// slots) are opened by the next proof of `combines` (`field` names them in errors),
/// whose output is a commitment of the next level. The subtotals' statements, and the
/// last level.
#[allow(clippy::type_complexity)]
fn subtotal_tree<'a>(
    mut level: Vec<Fr>,
    fan_in: usize,
    until: usize,
    combines: &mut impl Iterator<Item = (usize, &'a pb::CombineProof)>,
    field: &str,
) -> Result<(Vec<(Vec<Fr>, Proof)>, Vec<Fr>), VerifyError> {
    let shape = CombineShape::subtotal(fan_in);
    let mut statements = Vec::new();
    while level.len() > until {
        let mut next = Vec::new();
        for slots in level.chunks(fan_in) {
            let (i, c) = combines.next().ok_or_else(|| {
                VerifyError::Failed(format!(
                    "combine tree: a subtotal proof of {field} is missing"
                ))
            })?;
            let commitment = fr_from_bytes(&c.subtotal, &format!("{field}[{i}].subtotal"))?;
            let mut inputs = slots.to_vec();
            inputs.resize(fan_in, empty_slot_commitment());
            let inputs = CombineInstance {
                input_commitments: inputs,
                totals: None,
                result: CombineResult::Subtotal { commitment },
            }
            .public_inputs(&shape)
            .map_err(|e| VerifyError::Failed(format!("combine tree: {e}")))?;
            statements.push((inputs, proof(&c.proof, &format!("{field}[{i}].proof"))?));
            next.push(commitment);
        }
        level = next;
    }
    Ok((statements, level))
}

fn proof(bytes: &[u8], field: &str) -> Result<Proof, VerifyError> {
    snark::proof_from_bytes(bytes).map_err(|e| {
        VerifyError::Malformed(BundleError {
            field: field.to_string(),
            message: e.to_string(),
        })
    })
}

/// Outputs must fit the aggregand: predicates only with a counted condition, sums only
/// with a measure, arithmetic only between COUNT, SUM and AVG.
fn check_outputs(query: &ProvableQuery) -> Result<(), VerifyError> {
    fn fits(kind: &OutputKind, query: &ProvableQuery) -> bool {
        match (kind, &query.aggregand) {
            (OutputKind::GroupKey(column), _) => *column < query.group_by.len(),
            (OutputKind::Predicate, Aggregand::CountWhere { .. }) => true,
            (OutputKind::Predicate, _) => false,
            (_, Aggregand::CountWhere { .. }) => false,
            (OutputKind::Count, _) => true,
            (OutputKind::Sum(m) | OutputKind::Avg(m), Aggregand::Sum(measures)) => {
                *m < measures.len()
            }
            (OutputKind::Sum(_) | OutputKind::Avg(_), _) => false,
            (OutputKind::Arithmetic(a), _) => a.aggregates().into_iter().all(|k| {
                matches!(
                    k,
                    OutputKind::Count | OutputKind::Sum(_) | OutputKind::Avg(_)
                ) && fits(k, query)
            }),
        }
    }
    for o in &query.outputs {
        if !fits(&o.kind, query) {
            return failed(format!(
                "query: output `{}` does not fit the aggregand",
                o.name
            ));
        }
    }
    Ok(())
}

/// The root combine's public result, read from the result table: one row per group slot,
/// keyed as the root's domain keys them.
fn root_result(
    schema: &Schema,
    table: Option<&pb::ResultTable>,
    query: &ProvableQuery,
    circuits: &crate::query::CircuitQuery,
    noise: Option<(NoisePlan, Fr, Fr, Fr)>,
) -> Result<CombineResult, VerifyError> {
    let table = table.ok_or_else(|| BundleError {
        field: "result".into(),
        message: "missing".into(),
    })?;
    let domain = &circuits.root_shape.domain;
    let slots: Vec<u64> = (0..domain.slots()).map(|g| domain.key(g)).collect();
    let row_keys: Vec<u64> = table.rows.iter().map(|r| r.key).collect();
    if row_keys != slots {
        return failed(format!(
            "result: rows for keys {row_keys:?}, the query's group slots are {slots:?}"
        ));
    }
    let negate = matches!(query.aggregand, Aggregand::CountWhere { negate: true, .. });
    let predicate = circuits.root_shape.output == CombineOutput::Predicate;
    for (i, r) in table.rows.iter().enumerate() {
        let labels = query.group_labels(schema, &domain.codes(i));
        if r.labels != labels {
            return failed(format!(
                "result: row {i} is labelled {:?}, key {} is {labels:?}",
                r.labels, r.key
            ));
        }
        // Nothing beyond what the proof releases: no figures for suppressed groups, no
        // counts or sums beside a predicate, estimates only of noisy values.
        let silent = r.count == 0 && r.sums.is_empty();
        let estimated = r.count_estimate.is_some() || !r.sum_estimates.is_empty();
        if (r.suppressed && (!silent || r.holds || estimated))
            || (predicate && !silent)
            || (!predicate && r.holds)
            || (noise.is_none() && estimated)
        {
            return failed(format!(
                "result: row {i} states more than the proof releases"
            ));
        }
    }
    let k = circuits.combine_params.min_group_size;
    let measures = circuits.root_shape.sums;
    let sums_of = |i: usize, r: &pb::ResultRow| -> Result<Vec<u128>, BundleError> {
        if r.sums.len() != measures {
            return Err(BundleError {
                field: format!("result.rows[{i}].sums"),
                message: format!("{} sums for a query of {measures}", r.sums.len()),
            });
        }
        r.sums
            .iter()
            .enumerate()
            .map(|(m, sum)| {
                sum.parse::<u128>().map_err(|_| BundleError {
                    field: format!("result.rows[{i}].sums[{m}]"),
                    message: format!("{sum:?} is not a decimal integer"),
                })
            })
            .collect()
    };
    Ok(match circuits.root_shape.output {
        CombineOutput::Release => CombineResult::Release {
            min_group_size: k,
            groups: table
                .rows
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    if r.suppressed {
                        return Ok(GroupRelease::Suppressed);
                    }
                    Ok(GroupRelease::Released {
                        count: r.count,
                        sums: sums_of(i, r)?,
                    })
                })
                .collect::<Result<_, BundleError>>()?,
        },
        CombineOutput::Predicate => CombineResult::Predicate {
            min_group_size: k,
            threshold: circuits.combine_params.threshold,
            groups: table
                .rows
                .iter()
                .map(|r| match r.suppressed {
                    true => GroupAnswer::Suppressed,
                    false => GroupAnswer::Holds(r.holds != negate),
                })
                .collect(),
        },
        CombineOutput::Noisy { .. } => {
            let (plan, secret_commitment, query_hash, nonce) =
                noise.expect("a noisy root has a noise plan");
            let groups = table
                .rows
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    if r.suppressed {
                        return Ok(GroupNoisy::Suppressed);
                    }
                    let sums = sums_of(i, r)?;
                    let mut stated = vec![r.count_estimate.clone()];
                    stated.extend(r.sum_estimates.iter().cloned().map(Some));
                    let mut expected = vec![Some(estimate(
                        &plan,
                        u128::from(r.count),
                        u128::from(plan.count_step),
                    ))];
                    expected.extend(
                        sums.iter()
                            .zip(&plan.sum_steps)
                            .map(|(&sum, &step)| Some(estimate(&plan, sum, step))),
                    );
                    if stated != expected {
                        return failed(format!(
                            "result: row {i}'s estimates are not those its noisy values give"
                        ));
                    }
                    Ok(GroupNoisy::Released {
                        count: r.count,
                        sums,
                    })
                })
                .collect::<Result<_, VerifyError>>()?;
            CombineResult::Noisy {
                secret_commitment,
                query: query_hash,
                nonce,
                count_step: plan.count_step,
                sum_steps: plan.sum_steps.clone(),
                threshold: plan.threshold,
                groups,
            }
        }
        CombineOutput::Subtotal => return failed("query: the root cannot be a subtotal"),
    })
}

/// What a value released as `released` steps of `step` estimates, with its 95% interval.
pub fn estimate(plan: &NoisePlan, released: u128, step: u128) -> pb::NoisyEstimate {
    let (low, high) = plan.interval(released, step);
    pb::NoisyEstimate {
        estimate: plan.estimate(released, step).to_string(),
        low: low.to_string(),
        high: high.to_string(),
    }
}
