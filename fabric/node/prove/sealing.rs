//! Proving a roll-up's sealing ([`pb::SealingProof`]): at the sealing's challenge, every
//! rolled-up chunk's share (its present rows split by purpose) and every cell chunk's
//! share (its cells weighted by their counts), each side's shares added by subtotal
//! combines down to one commitment, both sides' last commitment under one blind, so that
//! they are the same field element exactly when the cells are the rows' aggregation.
//!
//! Chunk proofs are kept in the proof cache like a query's, so proving a sealing again
//! (after an interruption, or with another fan-in) reuses them; the whole proof is kept
//! there too ([`ProofCache::keep_sealing`]), so every later answer (from any epoch that
//! lists the sealing) carries it without proving anything.

use std::sync::atomic::{AtomicBool, Ordering};

use ark_ff::PrimeField;
use prost::Message;
use rand::{rngs::OsRng, Rng};
use zkfabric_circuits::{
    aggregate::{self, AggregateCircuit, AggregateInstance, AggregateQuery, AggregateShape},
    combine::{CombineShape, Opening},
    commitment::Chunk,
    evaluation, rollup,
    snark::{self, ProvingKey},
    Fr,
};
use zkfabric_proto::v1 as pb;

use super::{in_waves, verifying_key, Progress, ProveError, Subtotals};
use crate::{
    node::keys::KeyCache,
    node::proofs::{ProofCache, ProofKey},
    node::store::{Store, StoreError},
    verifier::bundle::fr_to_bytes,
    verifier::manifest::{fr_to_hex, Manifest, SignedManifest},
    verifier::schema::Schema,
    verifier::verify::{verify_sealing, SealingPublic, VerifyError},
};

/// Where a sealing proof is made: keys and proof cache, whether missing keys may be
/// made by a single-party setup, the subtotal fan-in, and what stops it.
pub struct Sealing<'a> {
    /// Proving keys.
    pub keys: &'a KeyCache,
    /// Chunk proofs kept for reuse.
    pub proofs: &'a ProofCache,
    /// Whether missing keys may be made by a single-party setup (development keys).
    pub setup: bool,
    /// Inputs of each subtotal combine.
    pub fan_in: usize,
    /// Set when the node is shutting down.
    pub cancel: &'a AtomicBool,
}

/// A sealing's proof and the verifying keys its statements need.
pub struct SealingProven {
    /// The proof.
    pub proof: pb::SealingProof,
    /// The keys of the rows', the cells' and (when any was needed) the subtotals' shapes.
    pub verifying_keys: Vec<pb::VerifyingKey>,
}

/// The key a sealing's whole proof is kept under, for the node's keys of its two chunk
/// shapes; `None` while the node lacks either (so nothing it kept can be current).
fn kept_key(keys: &KeyCache, public: &SealingPublic, fan_in: usize) -> Option<ProofKey> {
    let fingerprint =
        |shape: &AggregateShape| keys.info(&shape.description()).map(|i| i.fingerprint);
    Some(ProofKey::sealing(
        [
            &fingerprint(&public.shapes.rows)?,
            &fingerprint(&public.shapes.cells)?,
        ],
        fan_in,
        &public.challenge,
    ))
}

/// A sealing named by its roll-up and its position in a manifest's list.
pub type SealingAt = (String, usize);

/// Where a node keeps its sealings' proofs: the keys they were made with, the proof
/// cache holding them, and the subtotal fan-in they use.
#[derive(Clone, Copy)]
pub struct KeptSealings<'a> {
    /// The node's keys.
    pub keys: &'a KeyCache,
    /// The cache keeping the proofs.
    pub proofs: &'a ProofCache,
    /// Inputs of each subtotal combine.
    pub fan_in: usize,
}

impl KeptSealings<'_> {
    /// For each sealing `manifest` lists for roll-up `rollup` (none when it lists no such
    /// roll-up), whether its proof is kept: an answer from the roll-up then proves only
    /// its cells.
    pub fn kept(&self, schema: &Schema, manifest: &Manifest, rollup: &str) -> Vec<bool> {
        let Some(entry) = manifest.rollups.iter().find(|e| e.name == rollup) else {
            return Vec::new();
        };
        (0..entry.sealings.len())
            .map(|position| {
                SealingPublic::of(schema, manifest, rollup, position)
                    .ok()
                    .and_then(|public| kept_key(self.keys, &public, self.fan_in))
                    .is_some_and(|key| self.proofs.has_sealing(&key))
            })
            .collect()
    }

    /// The latest epoch of `dataset` with the sealings it lists (roll-up name and
    /// position) whose proof is not kept, or no longer verifies: what `zkfabric seal
    /// --prove-rollups` and `Admin.Seal` prove. `None` when the dataset declares no
    /// roll-up or has no epoch.
    pub fn unproven_latest(
        &self,
        store: &Store,
        dataset: &str,
    ) -> Result<Option<(SignedManifest, Vec<SealingAt>)>, ProveError> {
        let schema = store.schema(dataset)?;
        if schema.rollups.is_empty() || store.epochs(dataset)?.is_empty() {
            return Ok(None);
        }
        let manifest = store.manifest(dataset, None)?;
        let unproven = self.unproven(&schema, &manifest.manifest);
        Ok(Some((manifest, unproven)))
    }

    fn unproven(&self, schema: &Schema, manifest: &Manifest) -> Vec<SealingAt> {
        manifest
            .rollups
            .iter()
            .flat_map(|entry| (0..entry.sealings.len()).map(|position| (&entry.name, position)))
            .filter(|(name, position)| self.proof(schema, manifest, name, *position).is_none())
            .map(|(name, position)| (name.clone(), position))
            .collect()
    }

    /// The kept proof of sealing `position` of `rollup` in `manifest`, numbered for it,
    /// with its verifying keys, when it verifies under the node's keys (a damaged or
    /// stale one is proven again).
    pub fn proof(
        &self,
        schema: &Schema,
        manifest: &Manifest,
        rollup: &str,
        position: usize,
    ) -> Option<SealingProven> {
        let (keys, proofs, fan_in) = (self.keys, self.proofs, self.fan_in);
        let public = SealingPublic::of(schema, manifest, rollup, position).ok()?;
        let bytes = proofs.sealing(&kept_key(keys, &public, fan_in)?)?;
        let mut proof = pb::SealingProof::decode(&bytes[..]).ok()?;
        proof.sealing = position as u32;
        let mut shapes = vec![
            public.shapes.rows.description(),
            public.shapes.cells.description(),
        ];
        if !proof.row_subtotals.is_empty() || !proof.cell_subtotals.is_empty() {
            shapes.push(CombineShape::subtotal(proof.fan_in as usize).description());
        }
        let verifying_keys = shapes
            .into_iter()
            .map(|shape| {
                let info = keys.info(&shape)?;
                Some(pb::VerifyingKey {
                    fingerprint: info.fingerprint,
                    key: hex::decode(info.verifying_key).ok()?,
                    shape,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let key_for = |shape: &str| {
            verifying_keys
                .iter()
                .find(|k| k.shape == shape)
                .and_then(|k| snark::verifying_key_from_bytes(&k.key).ok())
                .ok_or_else(|| VerifyError::Failed(format!("no verifying key for {shape}")))
        };
        match verify_sealing(schema, manifest, &proof, key_for) {
            Ok(_) => Some(SealingProven {
                proof,
                verifying_keys,
            }),
            Err(e) => {
                tracing::warn!("a kept sealing proof of roll-up {rollup} was set aside: {e}");
                None
            }
        }
    }
}

/// One side's chunks, each with its published commitment.
struct Side<'s> {
    shape: &'s AggregateShape,
    query: &'s AggregateQuery,
    chunks: &'s [(Fr, Chunk)],
}

/// A sealing read from the store, ready to prove without it: its shapes and public
/// parameters, its challenge and last blind, and both sides' chunks with their published
/// commitments (checked to open them).
pub struct LoadedSealing {
    rollup: String,
    position: usize,
    shapes: rollup::RollupShapes,
    rows_query: AggregateQuery,
    cells_query: AggregateQuery,
    challenge: Fr,
    blind: Fr,
    rows: Vec<(Fr, Chunk)>,
    cells: Vec<(Fr, Chunk)>,
}

impl LoadedSealing {
    /// Reads sealing `position` of roll-up `rollup_name` as `manifest` lists it.
    pub fn load(
        store: &Store,
        manifest: &SignedManifest,
        rollup_name: &str,
        position: usize,
    ) -> Result<Self, ProveError> {
        let dataset = &manifest.manifest.dataset;
        let schema = store.schema(dataset)?;
        let corrupt = |m: String| ProveError::Store(StoreError::Corrupt(m));
        let SealingPublic {
            shapes,
            rows_query,
            cells_query,
            rows,
            cells,
            challenge,
            ..
        } = SealingPublic::of(&schema, &manifest.manifest, rollup_name, position).map_err(|e| {
            corrupt(format!(
                "epoch {} of {dataset}: {e}",
                manifest.manifest.epoch
            ))
        })?;
        let blind = top_blind(store, dataset, rollup_name, challenge);
        let opens = |(commitment, chunk): (Fr, Chunk), layout| {
            if chunk.commitment(layout) == commitment {
                Ok((commitment, chunk))
            } else {
                Err(corrupt(format!(
                    "chunk {} of sealing {position} no longer opens its published commitment",
                    chunk.index
                )))
            }
        };
        let rows = rows
            .into_iter()
            .map(|(e, c)| opens((c, store.chunk(dataset, e.index)?), &shapes.rows.layout))
            .collect::<Result<Vec<_>, ProveError>>()?;
        let cells = cells
            .into_iter()
            .map(|(e, c)| {
                opens(
                    (c, store.cell_chunk(dataset, rollup_name, e.index)?),
                    shapes.cell_layout(),
                )
            })
            .collect::<Result<Vec<_>, ProveError>>()?;
        Ok(Self {
            rollup: rollup_name.to_string(),
            position,
            shapes,
            rows_query,
            cells_query,
            challenge,
            blind,
            rows,
            cells,
        })
    }

    /// Present rows the sealing rolled up.
    pub fn rows(&self) -> u64 {
        self.rows
            .iter()
            .map(|(_, c)| c.row_count(&self.shapes.rows.layout))
            .sum()
    }
}

impl Sealing<'_> {
    /// Proves `sealing`.
    pub fn prove(
        &self,
        sealing: &LoadedSealing,
        progress: impl Fn(Progress) + Sync,
    ) -> Result<SealingProven, ProveError> {
        let (shapes, challenge, blind) = (&sealing.shapes, sealing.challenge, sealing.blind);
        progress(Progress::Proving {
            total: sealing.rows.len() + sealing.cells.len(),
        });
        let subtotals = Subtotals {
            keys: self.keys,
            setup: self.setup,
            fan_in: self.fan_in,
            cancel: self.cancel,
            progress: &progress,
        };
        let mut verifying_keys = Vec::new();
        let mut sides = Vec::new();
        let mut subtotal_key = None;
        for side in [
            Side {
                shape: &shapes.rows,
                query: &sealing.rows_query,
                chunks: &sealing.rows,
            },
            Side {
                shape: &shapes.cells,
                query: &sealing.cells_query,
                chunks: &sealing.cells,
            },
        ] {
            let (pk, proven) = self.prove_side(&side, challenge, blind, &progress)?;
            verifying_keys.push(verifying_key(&pk, side.shape.description()));
            let level = proven.iter().map(|(opening, _)| *opening).collect();
            let (top, combines, key) = subtotals.prove(level, 1, Some(blind))?;
            subtotal_key = subtotal_key.or(key);
            sides.push((
                proven.into_iter().map(|(_, p)| p).collect::<Vec<_>>(),
                combines,
                top,
            ));
        }
        let (cells_proofs, cell_subtotals, cells_top) = sides.pop().expect("two sides");
        let (rows_proofs, row_subtotals, rows_top) = sides.pop().expect("two sides");
        if rows_top != cells_top {
            return Err(ProveError::Store(StoreError::Corrupt(format!(
                "the cells of sealing {} of roll-up {} are not the aggregation of its \
                 chunks' rows",
                sealing.position, sealing.rollup
            ))));
        }
        if let Some(pk) = &subtotal_key {
            let shape = CombineShape::subtotal(self.fan_in);
            verifying_keys.push(verifying_key(pk, shape.description()));
        }
        let proof = pb::SealingProof {
            rollup: sealing.rollup.clone(),
            sealing: sealing.position as u32,
            fan_in: self.fan_in as u32,
            rows: rows_proofs,
            cells: cells_proofs,
            row_subtotals,
            cell_subtotals,
        };
        let key = ProofKey::sealing(
            [
                &verifying_keys[0].fingerprint,
                &verifying_keys[1].fingerprint,
            ],
            self.fan_in,
            &challenge,
        );
        self.proofs.keep_sealing(&key, &proof.encode_to_vec());
        Ok(SealingProven {
            proof,
            verifying_keys,
        })
    }

    /// Proves (or takes from the cache) each chunk of `side` at `challenge`; a side of one
    /// chunk commits its share under `blind`, the side's last commitment.
    #[allow(clippy::type_complexity)]
    fn prove_side(
        &self,
        side: &Side,
        challenge: Fr,
        blind: Fr,
        progress: &(impl Fn(Progress) + Sync),
    ) -> Result<(std::sync::Arc<ProvingKey>, Vec<(Opening, pb::ChunkProof)>), ProveError> {
        let description = side.shape.description();
        let on_setup = |_: &str| progress(Progress::Setup);
        let pk =
            self.keys
                .get::<AggregateCircuit>(side.shape, &description, self.setup, on_setup)?;
        let fingerprint = snark::fingerprint(pk.verifying_key());
        let vk = snark::prepare(pk.verifying_key());
        let parameters = format!(
            "{:?} sealing challenge {}",
            side.query,
            fr_to_hex(&challenge)
        );
        let single = side.chunks.len() == 1;
        let proven = in_waves(side.chunks.iter().collect(), |(commitment, chunk)| {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(ProveError::Cancelled);
            }
            let (commitment, index) = (*commitment, chunk.index);
            let cache_key = ProofKey::new(&fingerprint, &description, &parameters, &commitment);
            if let Some(cached) = self.proofs.get(&cache_key) {
                let tallies = aggregate::evaluate(side.shape, side.query, chunk)?;
                let share = aggregate::share(side.shape, &tallies, challenge);
                let evaluation_commitment = evaluation::commit(share, cached.blind);
                let inputs = AggregateInstance {
                    chunk_commitment: commitment,
                    chunk: chunk.id(&side.shape.layout),
                    query: side.query.clone(),
                    challenge,
                    evaluation_commitment,
                }
                .public_inputs(side.shape)?;
                if (!single || cached.blind == blind)
                    && snark::verify_prepared(&vk, &inputs, &cached.proof)?
                {
                    progress(Progress::ChunkProven { reused: true });
                    return Ok(chunk_proven(
                        index,
                        share,
                        cached.blind,
                        evaluation_commitment,
                        &cached.proof,
                    ));
                }
            }
            let chunk_blind = if single {
                blind
            } else {
                Fr::from(OsRng.gen::<u128>())
            };
            let circuit = AggregateCircuit::new(
                side.shape.clone(),
                side.query.clone(),
                chunk.clone(),
                challenge,
                chunk_blind,
            )?;
            let (share, evaluation_commitment) =
                (circuit.share, circuit.instance.evaluation_commitment);
            let proof = snark::prove(&pk, circuit, &mut OsRng)?;
            self.proofs.put(&cache_key, chunk_blind, &proof);
            progress(Progress::ChunkProven { reused: false });
            Ok(chunk_proven(
                index,
                share,
                chunk_blind,
                evaluation_commitment,
                &proof,
            ))
        })?;
        Ok((pk, proven))
    }
}

/// The blind both sides' last commitment is made under: a hash of the node's signature on
/// the sealing (deterministic, so a proof made again reuses cached chunk proofs; unknown
/// without the node's key, so the commitment hides the evaluation).
fn top_blind(store: &Store, dataset: &str, rollup: &str, challenge: Fr) -> Fr {
    let statement = format!(
        "zkfabric sealing blind v1\n{dataset}\n{rollup}\n{}\n",
        fr_to_hex(&challenge)
    );
    Fr::from_le_bytes_mod_order(&store.sign(statement.as_bytes()).to_bytes())
}

/// A proven chunk: its opening for the subtotals, and its proof for the bundle.
fn chunk_proven(
    index: u64,
    evaluation: Fr,
    blind: Fr,
    commitment: Fr,
    proof: &snark::Proof,
) -> (Opening, pb::ChunkProof) {
    (
        Opening { evaluation, blind },
        pb::ChunkProof {
            chunk: index,
            evaluation_commitment: fr_to_bytes(&commitment),
            proof: snark::proof_to_bytes(proof),
        },
    )
}
