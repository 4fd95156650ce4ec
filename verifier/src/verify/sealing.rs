//! A roll-up's sealing proofs ([`pb::SealingProof`]): that one sealing's cells are exactly
//! the aggregation of the rows of the chunks it rolled up, per key and purpose.
//!
//! Everything is recomputed from the signed manifest and the schema: the two chunk
//! shapes and the clip bounds (the schema's roll-up), the sealing's challenge (every
//! rolled-up chunk's commitment and every cell chunk's, as the manifest lists them), each
//! chunk statement (its commitment, table id, index and row count), and the subtotal
//! trees. The two sides must close on the same commitment.

use zkfabric_circuits::{
    aggregate::{AggregateInstance, AggregateQuery, ChunkId},
    combine::CombineShape,
    rollup,
    snark::{self, Proof, VerifyingKey},
    Fr,
};
use zkfabric_proto::v1 as pb;

use super::{failed, proof, subtotal_tree, VerifyError};
use crate::{
    bundle::fr_from_bytes,
    manifest::{fr_from_hex, ChunkEntry, Manifest},
    schema::Schema,
};

/// One statement of a sealing proof: its name, the shape its key must be for, the public
/// inputs recomputed from the manifest, and the proof.
pub type SealingStatement = (String, String, Vec<Fr>, Proof);

/// What a sealing states, all recomputed from the signed manifest and the schema: the
/// roll-up's two chunk shapes and their public parameters, the cells' table id, both
/// sides' chunks with their published commitments, and the sealing's challenge. The
/// verifier checks proofs against it; the node proves it and finds its cached proofs by it.
pub struct SealingPublic {
    /// The rows' and the cells' chunk shapes.
    pub shapes: rollup::RollupShapes,
    /// The rows' chunk statement parameters (the clip bounds).
    pub rows_query: AggregateQuery,
    /// The cells' chunk statement parameters.
    pub cells_query: AggregateQuery,
    /// The table id the cell chunks are committed under.
    pub cells_table: u64,
    /// The rolled-up chunks, in the sealing's order, with their commitments.
    pub rows: Vec<(ChunkEntry, Fr)>,
    /// The cell chunks, in order, with their commitments.
    pub cells: Vec<(ChunkEntry, Fr)>,
    /// The sealing's challenge.
    pub challenge: Fr,
}

impl SealingPublic {
    /// Sealing `position` of roll-up `name` as `manifest` (whose roll-ups cover its chunks,
    /// as [`Manifest::check_rollups`] checks) lists it; the error says what is missing.
    pub fn of(
        schema: &Schema,
        manifest: &Manifest,
        name: &str,
        position: usize,
    ) -> Result<Self, String> {
        let declared = schema
            .rollups
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| format!("the schema declares no roll-up `{name}`"))?;
        manifest
            .check_rollups()
            .map_err(|e| format!("manifest: {e}"))?;
        let listed = manifest
            .rollups
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| format!("the manifest lists no roll-up `{name}`"))?;
        let sealing = listed.sealings.get(position).ok_or_else(|| {
            format!(
                "roll-up `{name}`: the manifest lists {} sealings, not a sealing {position}",
                listed.sealings.len()
            )
        })?;
        let shapes = schema
            .rollup_shapes(declared, manifest.chunk_rows)
            .map_err(|e| format!("roll-up `{name}`: {e}"))?;
        let with_commitment = |entry: &ChunkEntry, what: &str| {
            fr_from_hex(&entry.commitment)
                .map(|c| (entry.clone(), c))
                .ok_or_else(|| format!("manifest: {what} {} commitment malformed", entry.index))
        };
        let rows = sealing
            .chunks
            .iter()
            .map(|index| {
                let entry = manifest
                    .chunks
                    .iter()
                    .find(|c| c.index == *index)
                    .ok_or_else(|| {
                        format!("roll-up `{name}`: sealed chunk {index} is not the epoch's")
                    })?;
                with_commitment(entry, "chunk")
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cells = sealing
            .cells
            .iter()
            .map(|entry| with_commitment(entry, "cell chunk"))
            .collect::<Result<Vec<_>, _>>()?;
        let rows_query = shapes.rows_query(schema.rollup_clips(declared));
        let commitments =
            |side: &[(ChunkEntry, Fr)]| side.iter().map(|(_, c)| *c).collect::<Vec<_>>();
        let challenge = rollup::challenge(
            &shapes,
            &rows_query,
            &commitments(&rows),
            &commitments(&cells),
        );
        Ok(Self {
            cells_query: shapes.cells_query(),
            cells_table: schema.cells_table_id(declared),
            shapes,
            rows_query,
            rows,
            cells,
            challenge,
        })
    }
}

/// The statements of `sealed` about a sealing in `manifest` (signed, and checked by the
/// caller), after checking that its two sides close on one commitment.
pub fn sealing_statements(
    schema: &Schema,
    manifest: &Manifest,
    sealed: &pb::SealingProof,
) -> Result<Vec<SealingStatement>, VerifyError> {
    let name = &sealed.rollup;
    let fail = |message: String| failed(format!("roll-up `{name}`: {message}"));
    let fan_in = sealed.fan_in as usize;
    if fan_in < 2 {
        return fail(format!("subtotal combines of {fan_in} inputs (at least 2)"));
    }
    let public = SealingPublic::of(schema, manifest, name, sealed.sealing as usize)
        .map_err(VerifyError::Failed)?;
    let challenge = public.challenge;

    let mut statements = Vec::new();
    let mut tops = Vec::new();
    let sides = [
        (
            "rows",
            &public.shapes.rows,
            &public.rows_query,
            manifest.dataset_id,
            &public.rows,
            &sealed.rows,
            &sealed.row_subtotals,
        ),
        (
            "cells",
            &public.shapes.cells,
            &public.cells_query,
            public.cells_table,
            &public.cells,
            &sealed.cells,
            &sealed.cell_subtotals,
        ),
    ];
    for (side, shape, query, table, entries, chunk_proofs, subtotals) in sides {
        let proven: Vec<u64> = chunk_proofs.iter().map(|p| p.chunk).collect();
        let listed: Vec<u64> = entries.iter().map(|(c, _)| c.index).collect();
        if proven != listed {
            return fail(format!(
                "sealing {} has {side} chunks {listed:?}, the proof covers {proven:?}",
                sealed.sealing
            ));
        }
        let description = shape.description();
        let mut level = Vec::with_capacity(entries.len());
        for (i, (p, (entry, chunk_commitment))) in chunk_proofs.iter().zip(entries).enumerate() {
            let field = format!("{side}[{i}]");
            let evaluation_commitment = fr_from_bytes(
                &p.evaluation_commitment,
                &format!("{field}.evaluation_commitment"),
            )?;
            let inputs = AggregateInstance {
                chunk_commitment: *chunk_commitment,
                chunk: ChunkId {
                    dataset_id: table,
                    index: entry.index,
                    rows: entry.rows,
                },
                query: query.clone(),
                challenge,
                evaluation_commitment,
            }
            .public_inputs(shape)
            .map_err(|e| VerifyError::Failed(format!("roll-up `{name}`: {e}")))?;
            statements.push((
                format!("{name}-{side}-{}", entry.index),
                description.clone(),
                inputs,
                proof(&p.proof, &format!("{field}.proof"))?,
            ));
            level.push(evaluation_commitment);
        }
        let mut combines = subtotals.iter().enumerate();
        let (subtotal_statements, top) = subtotal_tree(
            level,
            fan_in,
            1,
            &mut combines,
            &format!("{side}_subtotals"),
        )?;
        if combines.next().is_some() {
            return fail(format!("more {side} subtotal proofs than the tree has"));
        }
        let subtotal_shape = CombineShape::subtotal(fan_in).description();
        statements.extend(
            subtotal_statements
                .into_iter()
                .enumerate()
                .map(|(n, (inputs, p))| {
                    (
                        format!("{name}-{side}-subtotal-{n}"),
                        subtotal_shape.clone(),
                        inputs,
                        p,
                    )
                }),
        );
        tops.push(top);
    }
    if tops[0] != tops[1] {
        return fail(format!(
            "sealing {}: the rows' and the cells' evaluations differ (their commitments are \
             not the same): the cells are not the aggregation of the rows",
            sealed.sealing
        ));
    }
    Ok(statements)
}

/// Verifies `sealed` about a sealing in `manifest`, each statement under the key
/// `key_for` gives for its shape (pinned by the caller), batch by batch; the number of
/// proofs checked.
pub fn verify_sealing(
    schema: &Schema,
    manifest: &Manifest,
    sealed: &pb::SealingProof,
    key_for: impl Fn(&str) -> Result<VerifyingKey, VerifyError>,
) -> Result<usize, VerifyError> {
    let statements = sealing_statements(schema, manifest, sealed)?;
    let shapes: std::collections::BTreeSet<&str> =
        statements.iter().map(|(_, s, ..)| s.as_str()).collect();
    for shape in shapes {
        let vk = key_for(shape)?;
        let batch: Vec<(Vec<Fr>, Proof)> = statements
            .iter()
            .filter(|(_, s, ..)| s == shape)
            .map(|(_, _, inputs, p)| (inputs.clone(), p.clone()))
            .collect();
        let ok = snark::batch_verify(&vk, &batch, &mut rand::rngs::OsRng)
            .map_err(|e| VerifyError::Proofs(format!("roll-up `{}`: {e}", sealed.rollup)))?;
        if !ok {
            return Err(VerifyError::Proofs(format!(
                "roll-up `{}`: the sealing {} proofs do not verify against the manifest",
                sealed.rollup, sealed.sealing
            )));
        }
    }
    Ok(statements.len())
}
