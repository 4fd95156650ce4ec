//! The offline verifier: checks an answer bundle with no network and no data directory.
//!
//! In order: the manifest's signature (against a pinned node key when given), the schema
//! against the manifest's schema hash, the query against the schema, the verifying keys
//! against their fingerprints (and the pinned set when given), coverage (every chunk of
//! the epoch the query can touch is proven, once, in order), the result table against the
//! query, and finally every proof against public inputs recomputed from manifest, query
//! and result, batch-verified per key. This module uses only the circuits, the protobuf
//! messages and the pure query types: no DataFusion, no store.

use std::collections::{HashMap, HashSet};

use ed25519_dalek::VerifyingKey as NodeKey;
use rand::rngs::OsRng;
use zkfabric_circuits::{
    aggregate::AggregateInstance,
    combine::{
        empty_slot_commitment, CombineInstance, CombineOutput, CombineResult, CombineShape,
        GroupAnswer, GroupRelease,
    },
    snark::{self, Proof, VerifyingKey},
    Fr,
};
use zkfabric_proto::v1 as pb;

use crate::{
    bundle::{self, fr_from_bytes, Bundle, BundleError, FORMAT},
    manifest::fr_from_hex,
    query::{Aggregand, OutputKind, ProvableQuery},
    schema::Schema,
};

/// What the verifier trusts beyond the bundle.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// The node key manifests must be signed with.
    pub node_key: Option<NodeKey>,
    /// Fingerprints of verifying keys from a trusted setup; `None` accepts the bundle's
    /// own keys (and says so).
    pub fingerprints: Option<HashSet<String>>,
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
    /// Chunks in the epoch, and how many the query touches (all proven).
    pub chunks: (usize, usize),
    /// Proofs checked.
    pub proofs: usize,
    /// Whether the verifying keys were pinned by `--trusted-keys`.
    pub keys_pinned: bool,
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
    // The query and the circuits it means.
    let (query, limits) = bundle::query_from_proto(bundle.query.as_ref())?;
    let circuits = query
        .circuit(&schema, &limits)
        .map_err(|e| VerifyError::Failed(format!("query: {e}")))?;
    check_outputs(&query)?;

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
        if let Some(trusted) = &trust.fingerprints {
            if !trusted.contains(&fingerprint) {
                return failed(format!(
                    "verifying key {fingerprint} for {shape} is not among the trusted keys"
                ));
            }
        }
        Ok(vk)
    };

    // Coverage: the chunks the query can touch, each proven once, in order.
    let touched: Vec<(u64, Fr)> = manifest
        .chunks
        .iter()
        .filter(|c| query.touches(&schema, c.time_window))
        .map(|c| {
            fr_from_hex(&c.commitment)
                .map(|x| (c.index, x))
                .ok_or_else(|| {
                    VerifyError::Failed(format!("manifest: chunk {} commitment malformed", c.index))
                })
        })
        .collect::<Result<_, _>>()?;
    let proven: Vec<u64> = bundle.chunk_proofs.iter().map(|p| p.chunk).collect();
    let wanted: Vec<u64> = touched.iter().map(|(i, _)| *i).collect();
    if proven != wanted {
        return failed(format!(
            "coverage: the query touches chunks {wanted:?} of the epoch, the bundle proves {proven:?}"
        ));
    }

    // Chunk statements.
    let chunk_shape = circuits.chunk_shape.description();
    let chunk_vk = key_for(chunk_shape.clone())?;
    let mut names = Vec::new();
    let mut chunk_statements = Vec::new();
    let mut level = Vec::new();
    for (i, (p, (_, commitment))) in bundle.chunk_proofs.iter().zip(&touched).enumerate() {
        let partial_commitment = fr_from_bytes(
            &p.partial_commitment,
            &format!("chunk_proofs[{i}].partial_commitment"),
        )?;
        let inputs = AggregateInstance {
            chunk_commitment: *commitment,
            query: circuits.chunk_query.clone(),
            partial_commitment,
        }
        .public_inputs(&circuits.chunk_shape)
        .map_err(|e| VerifyError::Failed(format!("query: {e}")))?;
        chunk_statements.push((
            inputs,
            proof(&p.proof, &format!("chunk_proofs[{i}].proof"))?,
        ));
        names.push(format!("chunk-{}", p.chunk));
        level.push(partial_commitment);
    }

    // The combine tree: subtotal levels while more than K commitments remain, then the root.
    let fan_in = limits.combine_inputs;
    let groups = circuits.root_shape.groups;
    let pad = |mut slots: Vec<Fr>| {
        slots.resize(fan_in, empty_slot_commitment(groups));
        slots
    };
    let mut combines = bundle.combine_proofs.iter().enumerate();
    let mut subtotal_statements = Vec::new();
    let subtotal_shape = CombineShape {
        output: CombineOutput::Subtotal,
        ..circuits.root_shape
    };
    while level.len() > fan_in {
        let mut next = Vec::new();
        for slots in level.chunks(fan_in) {
            let (i, c) = combines.next().ok_or_else(|| {
                VerifyError::Failed("combine tree: a subtotal proof is missing".into())
            })?;
            let commitment = fr_from_bytes(&c.subtotal, &format!("combine_proofs[{i}].subtotal"))?;
            let inputs = CombineInstance {
                partial_commitments: pad(slots.to_vec()),
                result: CombineResult::Subtotal { commitment },
            }
            .public_inputs(&subtotal_shape)
            .map_err(|e| VerifyError::Failed(format!("combine tree: {e}")))?;
            subtotal_statements.push((
                inputs,
                proof(&c.proof, &format!("combine_proofs[{i}].proof"))?,
            ));
            next.push(commitment);
        }
        level = next;
    }
    let (i, root) = combines
        .next()
        .ok_or_else(|| VerifyError::Failed("combine tree: the root proof is missing".into()))?;
    if combines.next().is_some() {
        return failed("combine tree: more combine proofs than the tree has");
    }
    if !root.subtotal.is_empty() {
        return failed("combine tree: the root outputs a subtotal");
    }
    let result = root_result(&schema, bundle.result.as_ref(), &query, &circuits)?;
    let root_inputs = CombineInstance {
        partial_commitments: pad(level),
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
        chunks: (manifest.chunks.len(), touched.len()),
        proofs,
        keys_pinned: trust.fingerprints.is_some(),
        query,
        schema,
    })
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
/// with a measure.
fn check_outputs(query: &ProvableQuery) -> Result<(), VerifyError> {
    for o in &query.outputs {
        let fits = match (o.kind, &query.aggregand) {
            (OutputKind::GroupKey, _) => query.group_by.is_some(),
            (OutputKind::Predicate, Aggregand::CountWhere { .. }) => true,
            (OutputKind::Predicate, _) => false,
            (_, Aggregand::CountWhere { .. }) => false,
            (OutputKind::Count, _) => true,
            (OutputKind::Sum | OutputKind::Avg, a) => matches!(a, Aggregand::Sum(_)),
        };
        if !fits {
            return failed(format!(
                "query: output `{}` does not fit the aggregand",
                o.name
            ));
        }
    }
    Ok(())
}

/// The root combine's public result, read from the result table: one row per group slot,
/// keyed as the query's group keys.
fn root_result(
    schema: &Schema,
    table: Option<&pb::ResultTable>,
    query: &ProvableQuery,
    circuits: &crate::query::CircuitQuery,
) -> Result<CombineResult, VerifyError> {
    let table = table.ok_or_else(|| BundleError {
        field: "result".into(),
        message: "missing".into(),
    })?;
    let keys = &circuits.chunk_query.group_keys;
    let slots: Vec<u64> = if keys.is_empty() {
        vec![0]
    } else {
        keys.clone()
    };
    let row_keys: Vec<u64> = table.rows.iter().map(|r| r.key).collect();
    if row_keys != slots {
        return failed(format!(
            "result: rows for keys {row_keys:?}, the query's group slots are {slots:?}"
        ));
    }
    let negate = matches!(query.aggregand, Aggregand::CountWhere { negate: true, .. });
    let predicate = circuits.root_shape.output == CombineOutput::Predicate;
    for (i, r) in table.rows.iter().enumerate() {
        let label = query
            .group_by
            .as_deref()
            .and_then(|g| schema.column(g))
            .and_then(|(_, c)| c.label_of(r.key))
            .unwrap_or_default();
        if r.label != label {
            return failed(format!(
                "result: row {i} is labelled {:?}, key {} is {label:?}",
                r.label, r.key
            ));
        }
        // Nothing beyond what the proof releases: no figures for suppressed groups, no
        // counts or sums beside a predicate.
        let silent = r.count == 0 && r.sum.is_empty();
        if (r.suppressed && (!silent || r.holds))
            || (predicate && !silent)
            || (!predicate && r.holds)
        {
            return failed(format!(
                "result: row {i} states more than the proof releases"
            ));
        }
    }
    let k = circuits.combine_params.min_group_size;
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
                    let sum = r.sum.parse::<u128>().map_err(|_| BundleError {
                        field: format!("result.rows[{i}].sum"),
                        message: format!("{:?} is not a decimal integer", r.sum),
                    })?;
                    Ok(GroupRelease::Released {
                        count: r.count,
                        sum,
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
        CombineOutput::Subtotal => return failed("query: the root cannot be a subtotal"),
    })
}
