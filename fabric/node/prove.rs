//! Answering a query with proofs: DataFusion computes the per-chunk tallies, their sum is
//! committed as the totals and the challenge drawn, each chunk's native twin must agree
//! with DataFusion, the chunk proofs run in parallel, and a tree of combine proofs closes
//! the answer into a [`Bundle`].

mod sealing;

pub use sealing::{KeptSealings, LoadedSealing, Sealing, SealingProven};

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use ark_ff::PrimeField;

use datafusion::{
    arrow::{
        array::{Array, AsArray},
        datatypes::{DataType, Int64Type, UInt64Type},
    },
    functions_aggregate::expr_fn::{count, sum},
    logical_expr::{binary_expr, cast, col, lit, when, Expr, Operator},
    prelude::SessionContext,
};
use rand::{rngs::OsRng, Rng};
use rayon::prelude::*;
use zkfabric_circuits::{
    aggregate::{self, AggregateCircuit, AggregateInstance, AggregateShape, Grouping, Partial},
    combine::{
        challenge, Closing, CombineCircuit, CombineParams, CombineResult, CombineShape,
        GroupAnswer, GroupNoisy, GroupRelease, NoiseParams, Opening,
    },
    commitment::Chunk,
    evaluation::{add_tallies, Tallies, Tally},
    noise::NoiseSeed,
    snark::{self, ProvingKey},
    CircuitError, Fr,
};
use zkfabric_proto::v1 as pb;

use crate::{
    node::config::{Config, PrivacyConfig},
    node::keys::{KeyCache, KeyError, KeyInfo},
    node::proofs::{ProofCache, ProofKey},
    node::sql::{self, QueryError},
    node::store::{ChargeRequest, Store, StoreError},
    node::tables::{self, TablesError},
    shared::records::CHUNK_COLUMN,
    verifier::bundle::{self, fr_to_bytes, Bundle, BundleError, FORMAT},
    verifier::manifest::{fr_to_hex, ChunkEntry, SealingEntry, SignedManifest},
    verifier::privacy::{nonce_element, query_hash, Cost},
    verifier::query::{Aggregand, CircuitQuery, Limits, ProvableQuery, ShapeError, Test},
    verifier::schema::{Privacy, Schema},
    verifier::verify::estimate,
};

/// Why a query could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    /// The SQL is not a provable query.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The query does not fit the dataset's circuits.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The epoch could not be registered.
    #[error(transparent)]
    Tables(#[from] TablesError),
    /// A proving key is missing or unreadable.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// DataFusion failed computing the partials.
    #[error("computing the partials: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// A circuit refused its witness: an internal error, nothing was proven.
    #[error("internal error, nothing proven: {0}")]
    Circuit(#[from] CircuitError),
    /// DataFusion and the native twin disagree on a chunk: an internal error.
    #[error("internal error, nothing proven: chunk {chunk}'s tallies from DataFusion differ from the committed rows")]
    Mismatch { chunk: u64 },
    /// A selected row's group is not among the query's group slots (a code above its
    /// column's domain): an internal error, the store holds what ingest refuses.
    #[error("internal error, nothing proven: a selected row has group key {key}, outside the query's group slots")]
    OutsideDomain { key: u64 },
    /// The node is shutting down; the proofs made so far were dropped.
    #[error("cancelled: the node is shutting down")]
    Cancelled,
    /// The manifest could not be put in the bundle.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The query's privacy terms are unusable (no nonce, a malformed one, a bad default
    /// cost): the message says which.
    #[error("privacy: {0}")]
    Privacy(String),
}

/// What to answer.
#[derive(Clone, Debug)]
pub struct Request {
    /// The SQL text.
    pub sql: String,
    /// The consent purpose.
    pub purpose: String,
    /// The epoch (the latest when `None`).
    pub epoch: Option<u64>,
    /// Shape limits and the minimum group size.
    pub limits: Limits,
    /// Whether missing keys may be made by a single-party setup.
    pub setup: bool,
    /// The privacy cost asked for, on a dp dataset (the node's default when `None`).
    pub cost: Option<Cost>,
    /// The researcher's nonce, 32 bytes, on a dp dataset.
    pub nonce: Option<Vec<u8>>,
    /// The node's default cost and each dataset's budget.
    pub privacy: PrivacyConfig,
    /// Whether to answer from a roll-up's cells or from the rows.
    pub path: QueryPath,
}

/// Where an answer is computed from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QueryPath {
    /// From the roll-up with the fewest cells whose key and measures cover the query,
    /// else from the rows.
    #[default]
    Auto,
    /// From a covering roll-up; refused, saying why, when none covers the query.
    Rollup,
    /// From the rows.
    Raw,
}

impl QueryPath {
    /// Reads `auto` (or nothing), `rollup` or `raw`.
    pub fn parse(text: &str) -> Result<Self, ProveError> {
        match text {
            "" | "auto" => Ok(Self::Auto),
            "rollup" => Ok(Self::Rollup),
            "raw" => Ok(Self::Raw),
            other => Err(ProveError::Shape(ShapeError(format!(
                "path {other:?}: answer from `auto`, `rollup` or `raw`"
            )))),
        }
    }
}

impl Request {
    /// A request under `config`: its default purpose when `purpose` is `None` (empty when
    /// neither names one), its shape limits and minimum group size.
    pub fn new(
        config: &Config,
        sql: String,
        purpose: Option<String>,
        epoch: Option<u64>,
        setup: bool,
    ) -> Self {
        Self {
            sql,
            purpose: purpose
                .or_else(|| config.query.default_purpose.clone())
                .unwrap_or_default(),
            epoch,
            limits: config.limits(),
            setup,
            cost: None,
            nonce: None,
            privacy: config.privacy.clone(),
            path: QueryPath::Auto,
        }
    }

    /// The request with the privacy terms a researcher gave: epsilon and delta (either
    /// alone takes the node's default for the other) and the nonce.
    pub fn with_privacy(
        mut self,
        epsilon: Option<f64>,
        delta: Option<f64>,
        nonce: Option<Vec<u8>>,
    ) -> Result<Self, ProveError> {
        self.cost = match (epsilon, delta) {
            (None, None) => None,
            (e, d) => Some(
                Cost::new(
                    e.unwrap_or(self.privacy.epsilon),
                    d.unwrap_or(self.privacy.delta),
                )
                .map_err(|e| ProveError::Privacy(e.0))?,
            ),
        };
        self.nonce = nonce;
        Ok(self)
    }

    /// The cost answering over `schema`'s dataset spends: the one asked for or the
    /// node's default on a dp dataset; `None` on a threshold-only one (asking for a cost
    /// there is refused by the planner).
    pub fn cost_for(&self, schema: &Schema) -> Result<Option<Cost>, ProveError> {
        match (&schema.privacy, self.cost) {
            (Privacy::Dp(_), None) => self
                .privacy
                .default_cost()
                .map(Some)
                .map_err(ProveError::Privacy),
            (_, cost) => Ok(cost),
        }
    }
}

/// Progress of an answer, for progress bars.
#[derive(Clone, Copy, Debug)]
pub enum Progress {
    /// A development key is being made for a shape.
    Setup,
    /// `total` chunk proofs are about to start.
    Proving { total: usize },
    /// One more chunk proof is done; `reused` when it came from the proof cache.
    ChunkProven { reused: bool },
    /// The combine proofs are running.
    Combining,
}

/// The lowered query and the circuits it needs, before any proving: what `explain` shows.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The dataset's schema.
    pub schema: Schema,
    /// The provable query.
    pub query: ProvableQuery,
    /// Its circuits.
    pub circuits: CircuitQuery,
    /// The roll-up it is answered from (`None`: from the rows), and why.
    pub rollup: Option<String>,
    /// Why that path: the roll-up chosen, or why none covers the query.
    pub path_reason: String,
}

/// Plans `sql` against the epoch of the dataset it names: registers the epoch's table,
/// lowers the SQL and derives the circuit shapes.
pub async fn plan(
    ctx: &SessionContext,
    store: &Store,
    keys: &KeyCache,
    proofs: &ProofCache,
    request: &Request,
) -> Result<(Plan, SignedManifest), ProveError> {
    let dataset = sql::table_of(ctx, &request.sql)?;
    let schema = store.schema(&dataset)?;
    let manifest = tables::register_epoch(ctx, store, &dataset, request.epoch)?;
    let query = sql::lower(ctx, &schema, &request.sql, &request.purpose).await?;
    let circuits = query.circuit(&schema, &request.limits, request.cost_for(&schema)?)?;
    let has_key = |shape: &str| keys.can_provide(shape, request.setup);
    let kept = KeptSealings {
        keys,
        proofs,
        fan_in: request.limits.combine_inputs,
    };
    let proven = |rollup: &str| {
        let kept = kept.kept(&schema, &manifest.manifest, rollup);
        !kept.is_empty() && kept.iter().all(|&k| k)
    };
    let (circuits, rollup, path_reason) = choose_path(
        &schema,
        &manifest,
        circuits,
        request.path,
        &Availability {
            has_key: &has_key,
            proven: &proven,
        },
    )?;
    if let Some(noise) = circuits
        .noise
        .as_ref()
        .filter(|n| n.root_coins > request.privacy.max_root_coins)
    {
        return Err(ProveError::Privacy(format!(
            "a noisy answer of {} groups x {} values x {} coins draws {} coins in its root \
             proof; this node proves at most {} ([privacy] max_root_coins, about 80 KB of \
             memory a coin): ask for fewer groups (a narrower time range, fewer grouping \
             columns) or sums, or spend more epsilon",
            circuits.root_shape.groups(),
            1 + noise.sum_steps.len(),
            noise.coins,
            noise.root_coins,
            request.privacy.max_root_coins
        )));
    }
    Ok((
        Plan {
            schema,
            query,
            circuits,
            rollup,
            path_reason,
        },
        manifest,
    ))
}

/// What the planner may rely on for a roll-up: whether a key for a shape is at hand, and
/// whether a roll-up's sealings are all proven and kept.
struct Availability<'a> {
    has_key: &'a dyn Fn(&str) -> bool,
    proven: &'a dyn Fn(&str) -> bool,
}

/// Where to answer from, as `path` asks: the covering roll-up with the fewest cells in
/// the epoch (its circuits over the cells) whose keys are at hand, or the rows; with the
/// reason in words. `auto` takes a roll-up only once its sealings are proven (proving
/// one costs more than reading its rows) and only when it has fewer cells than the epoch
/// has rows; `rollup` proves what is missing.
fn choose_path(
    schema: &Schema,
    manifest: &SignedManifest,
    rows: CircuitQuery,
    path: QueryPath,
    available: &Availability,
) -> Result<(CircuitQuery, Option<String>, String), ProveError> {
    if path == QueryPath::Raw || schema.rollups.is_empty() {
        let why = match path {
            QueryPath::Raw => "from the rows, as asked",
            _ => "from the rows: the dataset declares no roll-up",
        };
        return match path {
            QueryPath::Rollup => Err(ProveError::Shape(ShapeError(format!(
                "no roll-up answers this query: dataset {} declares none",
                schema.name
            )))),
            _ => Ok((rows, None, why.to_string())),
        };
    }
    let rows_count: u64 = manifest.manifest.chunks.iter().map(|c| c.rows).sum();
    let mut covering = Vec::new();
    let mut refusals = Vec::new();
    for rollup in &schema.rollups {
        let name = &rollup.name;
        let Some(entry) = manifest.manifest.rollups.iter().find(|e| e.name == *name) else {
            refusals.push(format!(
                "roll-up `{name}`: epoch {} lists no sealing of it",
                manifest.manifest.epoch
            ));
            continue;
        };
        let cells = entry.cells();
        let circuits = match rows.over_rollup(schema, rollup) {
            Ok(circuits) => circuits,
            Err(e) => {
                refusals.push(e.0);
                continue;
            }
        };
        if let Some(shape) = rollup_key_missing(schema, rollup, &circuits, available.has_key) {
            refusals.push(format!(
                "roll-up `{name}`: no key for {shape} (import the ceremony's, or run `zkfabric \
                 setup` in development)"
            ));
        } else if path == QueryPath::Auto && !(available.proven)(name) {
            refusals.push(format!(
                "roll-up `{name}` covers the query but its sealings are not all proven yet \
                 (`zkfabric seal {} --prove-rollups` proves them, as does the first answer \
                 asked with path `rollup`)",
                schema.name
            ));
        } else if path == QueryPath::Auto && cells >= rows_count {
            refusals.push(format!(
                "roll-up `{name}` covers the query but has {cells} cells for {rows_count} rows"
            ));
        } else {
            covering.push((cells, name.clone(), circuits));
        }
    }
    match covering.into_iter().min_by_key(|(cells, ..)| *cells) {
        Some((cells, name, circuits)) => {
            let why = format!(
                "from roll-up `{name}`: {cells} cells in place of {rows_count} rows (its key \
                 and measures cover the query)"
            );
            Ok((circuits, Some(name), why))
        }
        None if path == QueryPath::Rollup => Err(ProveError::Shape(ShapeError(format!(
            "no roll-up answers this query: {}",
            refusals.join("; ")
        )))),
        None => Ok((
            rows,
            None,
            format!("from the rows: {}", refusals.join("; ")),
        )),
    }
}

/// The first chunk shape an answer from `rollup` needs a key for that `has_key` lacks:
/// the chunk proof's over the cells, or a sealing's two.
fn rollup_key_missing(
    schema: &Schema,
    rollup: &crate::verifier::schema::Rollup,
    circuits: &CircuitQuery,
    has_key: &dyn Fn(&str) -> bool,
) -> Option<String> {
    let sealing = schema.rollup_shapes(rollup, schema.chunk_rows).ok()?;
    [&circuits.chunk_shape, &sealing.rows, &sealing.cells]
        .map(AggregateShape::description)
        .into_iter()
        .find(|shape| !has_key(shape))
}

/// A query planned and its witnesses loaded: everything proving needs from the store,
/// so that the store is free again while the proofs run.
pub struct Prepared {
    ctx: SessionContext,
    plan: Plan,
    manifest: SignedManifest,
    chunks: Vec<Chunk>,
    /// Each chunk's published commitment, in the order the answer covers them.
    commitments: Vec<Fr>,
    /// From a roll-up: its sealings, whose proofs the bundle carries.
    sealings: Vec<SealingWork>,
    totals_blind: Fr,
    noise: Option<PreparedNoise>,
}

/// A sealing an answer from a roll-up carries: its kept proof, or what proving it needs.
enum SealingWork {
    Kept(SealingProven),
    Load(Box<LoadedSealing>),
}

/// A dp answer's noise seed and its charge, fixed before proving.
struct PreparedNoise {
    seed: NoiseSeed,
    nonce: Vec<u8>,
    charge: pb::LedgerEntry,
}

impl Prepared {
    /// The plan being proven.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Chunk proofs the answer needs.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }
}

/// Plans `request` and loads the committed rows and salts of every chunk it touches,
/// which must still open the commitments the manifest published.
pub async fn prepare(
    store: &Store,
    keys: &KeyCache,
    proofs: &ProofCache,
    request: &Request,
) -> Result<Prepared, ProveError> {
    let ctx = SessionContext::new();
    let (plan, manifest) = plan(&ctx, store, keys, proofs, request).await?;
    let layout = &plan.circuits.chunk_shape.layout;
    let dataset = &plan.schema.name;
    // The chunks the answer covers: the epoch's, or every cell chunk of the roll-up.
    let (published, sealings): (Vec<&ChunkEntry>, Vec<SealingWork>) = match &plan.rollup {
        None => (manifest.manifest.chunks.iter().collect(), Vec::new()),
        Some(rollup) => {
            let entry = manifest
                .manifest
                .rollups
                .iter()
                .find(|e| e.name == *rollup)
                .expect("chosen from the manifest's roll-ups");
            let fan_in = request.limits.combine_inputs;
            let sealings = (0..entry.sealings.len())
                .map(|position| {
                    let kept = KeptSealings {
                        keys,
                        proofs,
                        fan_in,
                    }
                    .proof(&plan.schema, &manifest.manifest, rollup, position);
                    match kept {
                        Some(proven) => Ok(SealingWork::Kept(proven)),
                        None => LoadedSealing::load(store, &manifest, rollup, position)
                            .map(|l| SealingWork::Load(Box::new(l))),
                    }
                })
                .collect::<Result<_, _>>()?;
            (
                entry.sealings.iter().flat_map(|s| &s.cells).collect(),
                sealings,
            )
        }
    };
    let (chunks, commitments): (Vec<Chunk>, Vec<Fr>) = published
        .iter()
        .map(|published| {
            let chunk = match &plan.rollup {
                None => store.chunk(dataset, published.index)?,
                Some(rollup) => store.cell_chunk(dataset, rollup, published.index)?,
            };
            let commitment = chunk.commitment(layout);
            if published.commitment != fr_to_hex(&commitment) {
                return Err(ProveError::Store(StoreError::Corrupt(format!(
                    "chunk {} no longer opens its published commitment",
                    published.index
                ))));
            }
            Ok((chunk, commitment))
        })
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .unzip();
    let noise = match &plan.circuits.noise {
        None => None,
        Some(noise_plan) => {
            let nonce = request.nonce.clone().ok_or_else(|| {
                ProveError::Privacy(
                    "a differentially private query needs the researcher's nonce (32 fresh \
                     random bytes)"
                        .into(),
                )
            })?;
            let nonce_fr = nonce_element(&nonce).map_err(|e| ProveError::Privacy(e.0))?;
            let epoch = manifest.manifest.epoch;
            let dataset = &plan.schema.name;
            let query = query_hash(
                dataset,
                epoch,
                &bundle::query_to_proto(&plan.query, &request.limits),
                noise_plan.cost,
            );
            let secret = store.noise_secret(dataset, epoch)?;
            // Charged before anything is proven: an answer that fails later stays paid
            // for, and asking again with the same nonce costs nothing more.
            let charge = store.charge(&ChargeRequest {
                dataset: dataset.clone(),
                epoch,
                query_hash: fr_to_hex(&query),
                nonce: nonce.clone(),
                cost: noise_plan.cost,
                purpose: plan.query.purpose.clone(),
                budget: request.privacy.budget(),
            })?;
            Some(PreparedNoise {
                seed: NoiseSeed {
                    secret,
                    query,
                    nonce: nonce_fr,
                },
                nonce,
                charge: charge.entry,
            })
        }
    };
    let totals_blind = totals_blind(store, &plan, &manifest);
    Ok(Prepared {
        ctx,
        plan,
        manifest,
        chunks,
        commitments,
        sealings,
        totals_blind,
        noise,
    })
}

/// The blind of a query's totals: a hash of the node's signature on the statement (the
/// dataset, epoch, circuits, public parameters and chunk commitments). Ed25519 signs
/// deterministically, so the same question over the same chunks gets the same totals
/// commitment and challenge, and cached chunk proofs stay usable; without the node's
/// key no one can compute it, so the commitment hides the totals.
fn totals_blind(store: &Store, plan: &Plan, manifest: &SignedManifest) -> Fr {
    let circuits = &plan.circuits;
    let mut statement = format!(
        "zkfabric totals blind v1\n{}\n{}\n{}\n{:?}\n{}\n",
        plan.schema.name,
        manifest.manifest.epoch,
        circuits.chunk_shape.description(),
        circuits.chunk_query,
        circuits.root_shape.description(),
    );
    for chunk in &manifest.manifest.chunks {
        statement.push_str(&chunk.commitment);
        statement.push('\n');
    }
    Fr::from_le_bytes_mod_order(&store.sign(statement.as_bytes()).to_bytes())
}

/// Answers `request` over `store` with proofs, using (and, with `request.setup`, making)
/// keys in `keys`, and reusing chunk proofs kept in `proofs`.
pub async fn answer(
    store: &Store,
    keys: &KeyCache,
    proofs: &ProofCache,
    request: &Request,
    progress: impl Fn(Progress) + Sync,
) -> Result<Bundle, ProveError> {
    let prepared = prepare(store, keys, proofs, request).await?;
    prove(
        prepared,
        keys,
        proofs,
        request,
        progress,
        &AtomicBool::new(false),
    )
    .await
}

/// Proves a prepared query: DataFusion's partials, chunk proofs in parallel (reused from
/// `proofs` where a cached one verifies, and kept there when new), the combine tree.
/// Setting `cancel` stops it between proofs with [`ProveError::Cancelled`]. Each
/// chunk proof starts at the failpoint `prove-chunk` (`FAILPOINTS=prove-chunk=sleep(500)`
/// slows proving down, for tests of queueing and shutdown).
pub async fn prove(
    prepared: Prepared,
    keys: &KeyCache,
    proofs: &ProofCache,
    request: &Request,
    progress: impl Fn(Progress) + Sync,
    cancel: &AtomicBool,
) -> Result<Bundle, ProveError> {
    let Prepared {
        ctx,
        plan,
        manifest,
        chunks,
        commitments: published,
        sealings,
        totals_blind,
        noise,
    } = prepared;
    let Plan {
        schema,
        query,
        circuits,
        rollup,
        ..
    } = &plan;
    let check_cancel = || {
        if cancel.load(Ordering::Relaxed) {
            Err(ProveError::Cancelled)
        } else {
            Ok(())
        }
    };
    // Each chunk's tallies: DataFusion's over the rows (checked against each chunk's
    // native twin below); over cells, which their sealing's proof ties to the rows, the
    // native twin's.
    let expected = match rollup {
        None => tallies(&ctx, schema, query, circuits).await?,
        Some(_) => chunks
            .iter()
            .map(|c| {
                Ok((
                    c.index,
                    aggregate::evaluate(&circuits.chunk_shape, &circuits.chunk_query, c)?,
                ))
            })
            .collect::<Result<_, ProveError>>()?,
    };

    // The totals, committed before anything else: the challenge is drawn after them.
    let shape = &circuits.chunk_shape;
    let mut all = Tallies::new();
    for tallies in expected.values() {
        add_tallies(&mut all, tallies);
    }
    let totals = Partial::from_tallies(&circuits.root_shape.domain, shape.aggregand.sums(), &all)
        .map_err(|key| ProveError::OutsideDomain { key })?;
    let totals_commitment = totals.commit(totals_blind);
    let commitments: HashMap<u64, Fr> = chunks
        .iter()
        .map(|c| c.index)
        .zip(published.iter().copied())
        .collect();
    let challenge = challenge(
        shape,
        &circuits.chunk_query,
        &circuits.root_shape,
        totals_commitment,
        &published,
    );

    let on_setup = |_: &str| progress(Progress::Setup);
    let chunk_description = shape.description();
    let chunk_pk =
        keys.get::<AggregateCircuit>(shape, &chunk_description, request.setup, on_setup)?;

    progress(Progress::Proving {
        total: chunks.len(),
    });
    let chunk_fingerprint = snark::fingerprint(chunk_pk.verifying_key());
    let chunk_vk = snark::prepare(chunk_pk.verifying_key());
    // A cached proof answers the same public parameters under the same challenge.
    let parameters = format!(
        "{:?} challenge {}",
        circuits.chunk_query,
        fr_to_hex(&challenge)
    );
    let no_rows = Tallies::new();
    let proven: Vec<(u64, Opening, Fr, snark::Proof)> = in_waves(chunks, |chunk| {
        fail::fail_point!("prove-chunk");
        check_cancel()?;
        let index = chunk.index;
        let tallies = expected.get(&index).unwrap_or(&no_rows);
        let chunk_commitment = commitments[&index];
        let cache_key = ProofKey::new(
            &chunk_fingerprint,
            &chunk_description,
            &parameters,
            &chunk_commitment,
        );
        if let Some(cached) = proofs.get(&cache_key) {
            let share = aggregate::share(shape, tallies, challenge);
            let evaluation_commitment = zkfabric_circuits::evaluation::commit(share, cached.blind);
            let instance = AggregateInstance {
                chunk_commitment,
                chunk: chunk.id(&shape.layout),
                query: circuits.chunk_query.clone(),
                challenge,
                evaluation_commitment,
            };
            let inputs = instance.public_inputs(shape)?;
            if snark::verify_prepared(&chunk_vk, &inputs, &cached.proof)? {
                progress(Progress::ChunkProven { reused: true });
                let opening = Opening {
                    evaluation: share,
                    blind: cached.blind,
                };
                return Ok((index, opening, evaluation_commitment, cached.proof));
            }
            tracing::warn!("a cached proof of chunk {index} does not verify: proving again");
        }
        let blind = Fr::from(OsRng.gen::<u128>());
        let circuit = AggregateCircuit::new(
            shape.clone(),
            circuits.chunk_query.clone(),
            chunk,
            challenge,
            blind,
        )?;
        if circuit.tallies != *tallies {
            return Err(ProveError::Mismatch { chunk: index });
        }
        let commitment = circuit.instance.evaluation_commitment;
        let evaluation = circuit.share;
        let proof = snark::prove(&chunk_pk, circuit, &mut OsRng)?;
        proofs.put(&cache_key, blind, &proof);
        progress(Progress::ChunkProven { reused: false });
        Ok((index, Opening { evaluation, blind }, commitment, proof))
    })?;

    progress(Progress::Combining);
    let fan_in = request.limits.combine_inputs;
    let subtotal_shape = CombineShape::subtotal(fan_in);
    let level: Vec<Opening> = proven.iter().map(|(_, o, _, _)| *o).collect();
    let subtotals = Subtotals {
        keys,
        setup: request.setup,
        fan_in,
        cancel,
        progress: &progress,
    };
    let (level, mut combine_proofs, subtotal_key) = subtotals.prove(level, fan_in, None)?;
    check_cancel()?;
    let root_description = circuits.root_shape.description();
    let root_pk = keys.get::<CombineCircuit>(
        &circuits.root_shape,
        &root_description,
        request.setup,
        on_setup,
    )?;
    let mut root_params = circuits.combine_params.clone();
    if let (Some(plan), Some(n)) = (&circuits.noise, &noise) {
        root_params.noise = Some(NoiseParams {
            seed: n.seed,
            count_step: plan.count_step,
            sum_steps: plan.sum_steps.clone(),
            threshold: plan.threshold,
        });
    }
    let root = CombineCircuit::new(
        circuits.root_shape.clone(),
        root_params,
        level,
        Closing::Root {
            totals,
            blind: totals_blind,
            challenge,
        },
    )?;
    let result = result_table(schema, query, circuits, &root.instance.result);
    let root_proof = snark::prove(&root_pk, root, &mut OsRng)?;
    combine_proofs.push(pb::CombineProof {
        subtotal: Vec::new(),
        proof: snark::proof_to_bytes(&root_proof),
    });

    let mut verifying_keys = vec![verifying_key(&chunk_pk, chunk_description)];
    if let Some(pk) = &subtotal_key {
        verifying_keys.push(verifying_key(pk, subtotal_shape.description()));
    }
    verifying_keys.push(verifying_key(&root_pk, root_description));
    // From a roll-up, the proofs that its cells are the rows' aggregation (their chunk
    // proofs come from the cache once the seal made them).
    let sealing = Sealing {
        keys,
        proofs,
        setup: request.setup,
        fan_in,
        cancel,
    };
    let mut sealing_proofs = Vec::with_capacity(sealings.len());
    for work in sealings {
        let proven = match work {
            SealingWork::Kept(proven) => proven,
            SealingWork::Load(loaded) => sealing.prove(&loaded, |p| {
                if let Progress::Setup = p {
                    progress(Progress::Setup)
                }
            })?,
        };
        for key in proven.verifying_keys {
            if !verifying_keys.iter().any(|k| k.shape == key.shape) {
                verifying_keys.push(key);
            }
        }
        sealing_proofs.push(proven.proof);
    }
    Ok(Bundle {
        format: FORMAT,
        dataset: schema.name.clone(),
        epoch: manifest.manifest.epoch,
        manifest: Some(bundle::manifest_to_proto(&manifest)?),
        schema: schema.source.clone(),
        sql: sql::canonical(&request.sql)?,
        query: Some(bundle::query_to_proto(query, &request.limits)),
        result: Some(result),
        chunk_proofs: proven
            .iter()
            .map(|(index, _, commitment, proof)| pb::ChunkProof {
                chunk: *index,
                evaluation_commitment: fr_to_bytes(commitment),
                proof: snark::proof_to_bytes(proof),
            })
            .collect(),
        combine_proofs,
        verifying_keys,
        privacy: Some(privacy_terms(schema, circuits, noise)),
        totals_commitment: fr_to_bytes(&totals_commitment),
        rollup: rollup.clone().unwrap_or_default(),
        sealing_proofs,
    })
}

/// A bundle's privacy terms: the mode and, for a dp answer, its cost, noise and charge.
fn privacy_terms(
    schema: &Schema,
    circuits: &CircuitQuery,
    noise: Option<PreparedNoise>,
) -> pb::Privacy {
    let mut terms = pb::Privacy {
        mode: schema.privacy.mode().to_string(),
        ..Default::default()
    };
    if let Some(plan) = &circuits.noise {
        terms.epsilon = plan.cost.epsilon;
        terms.delta = plan.cost.delta;
        terms.coins = plan.coins;
        terms.count_step = plan.count_step;
        terms.sum_steps = plan.sum_steps.iter().map(u128::to_string).collect();
        terms.threshold = plan.threshold;
    }
    if let Some(n) = noise {
        terms.nonce = n.nonce;
        terms.charge = Some(n.charge);
    }
    terms
}

/// Subtotal combines of `fan_in` inputs: how a tree of them is proven over committed
/// evaluations, for a query's answer and a roll-up's sealing alike.
struct Subtotals<'a> {
    keys: &'a KeyCache,
    /// Whether a missing key may be made by a single-party setup.
    setup: bool,
    fan_in: usize,
    cancel: &'a AtomicBool,
    progress: &'a (dyn Fn(Progress) + Sync),
}

impl Subtotals<'_> {
    /// Proves subtotal levels over `level` while more than `until` openings remain, each
    /// combine opening the next `fan_in` of them; a level of one combine outputs its
    /// commitment under `last_blind` when given (else a fresh blind). The last level, the
    /// proofs (leaves first), and the key when any subtotal was needed.
    #[allow(clippy::type_complexity)]
    fn prove(
        &self,
        mut level: Vec<Opening>,
        until: usize,
        last_blind: Option<Fr>,
    ) -> Result<(Vec<Opening>, Vec<pb::CombineProof>, Option<Arc<ProvingKey>>), ProveError> {
        let shape = CombineShape::subtotal(self.fan_in);
        let params = CombineParams {
            min_group_size: 1,
            threshold: 0,
            noise: None,
        };
        let mut proofs = Vec::new();
        let mut key = None;
        while level.len() > until {
            if key.is_none() {
                let d = shape.description();
                let on_setup = |_: &str| (self.progress)(Progress::Setup);
                key = Some(
                    self.keys
                        .get::<CombineCircuit>(&shape, &d, self.setup, on_setup)?,
                );
            }
            let pk = key.as_ref().expect("just made");
            let groups: Vec<&[Opening]> = level.chunks(self.fan_in).collect();
            let last = groups.len() == 1;
            let next: Vec<(Opening, pb::CombineProof)> = in_waves(groups, |openings| {
                if self.cancel.load(Ordering::Relaxed) {
                    return Err(ProveError::Cancelled);
                }
                let blind = match last_blind.filter(|_| last) {
                    Some(blind) => blind,
                    None => Fr::from(OsRng.gen::<u128>()),
                };
                let circuit = CombineCircuit::new(
                    shape.clone(),
                    params.clone(),
                    openings.to_vec(),
                    Closing::Subtotal { blind },
                )?;
                let CombineResult::Subtotal { commitment } = circuit.instance.result else {
                    unreachable!("a subtotal shape outputs a subtotal")
                };
                let evaluation = circuit.sum;
                let proof = snark::prove(pk, circuit, &mut OsRng)?;
                Ok((
                    Opening { evaluation, blind },
                    pb::CombineProof {
                        subtotal: fr_to_bytes(&commitment),
                        proof: snark::proof_to_bytes(&proof),
                    },
                ))
            })?;
            let (openings, made): (Vec<_>, Vec<_>) = next.into_iter().unzip();
            proofs.extend(made);
            level = openings;
        }
        Ok((level, proofs, key))
    }
}

/// Runs `prove` over `items` in parallel, one wave of as many items as rayon has threads
/// at a time. Each proof parallelizes inside (MSMs, FFTs); while a thread waits there,
/// rayon's work stealing may start another pending item on the same stack, so one
/// parallel iterator over a thousand proofs nests proofs until the stack overflows (seen
/// at 977 chunks). A wave bounds that nesting by the number of threads.
fn in_waves<T: Send, U: Send>(
    items: Vec<T>,
    prove: impl Fn(T) -> Result<U, ProveError> + Sync + Send,
) -> Result<Vec<U>, ProveError> {
    let wave = rayon::current_num_threads().max(1);
    let mut done = Vec::with_capacity(items.len());
    let mut pending = items.into_iter().peekable();
    while pending.peek().is_some() {
        let batch: Vec<T> = pending.by_ref().take(wave).collect();
        done.extend(
            batch
                .into_par_iter()
                .map(&prove)
                .collect::<Result<Vec<_>, _>>()?,
        );
    }
    Ok(done)
}

/// Seconds per proven constraint on this machine, for estimates before a node has
/// measured its own rate: the 2-core figure of `benches/README.md` (about 60
/// core-microseconds a constraint), divided among the cores here.
pub fn assumed_seconds_per_constraint() -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    6.0e-5 / cores as f64
}

/// One circuit an answer proves with, as `explain` shows it.
#[derive(Clone, Debug)]
pub struct PlannedCircuit {
    /// `chunk`, `subtotal` or `root`.
    pub role: &'static str,
    /// The canonical shape description.
    pub shape: String,
    /// Proofs of this circuit the answer needs.
    pub proofs: u64,
    /// The node's key for the shape, if it has one.
    pub key: Option<KeyInfo>,
}

/// A query's plan and what answering it would prove: `zkfabric query --explain` and the
/// Explain RPC.
#[derive(Clone, Debug)]
pub struct Explanation {
    /// The lowered query and its circuits.
    pub plan: Plan,
    /// The epoch planned over.
    pub epoch: u64,
    /// Chunks the answer proves (one proof each), and the chunks it covers: every chunk
    /// of the epoch, or every cell chunk of the roll-up (so far always the same).
    pub chunks: (u64, u64),
    /// The circuits, chunk first, root last.
    pub circuits: Vec<PlannedCircuit>,
    /// The limits the shapes were derived under.
    pub limits: Limits,
    /// A dp dataset's budget left before this query.
    pub remaining: Option<Cost>,
}

impl Explanation {
    /// The protobuf form (the Explain RPC's answer); `seconds_per_constraint` is the
    /// proving rate the time estimate assumes.
    pub fn to_proto(&self, seconds_per_constraint: f64) -> pb::ExplainResponse {
        let constraints = self.constraints();
        pb::ExplainResponse {
            dataset: self.plan.schema.name.clone(),
            epoch: self.epoch,
            query: Some(bundle::query_to_proto(&self.plan.query, &self.limits)),
            circuits: self
                .circuits
                .iter()
                .map(|c| pb::PlannedCircuit {
                    role: c.role.to_string(),
                    shape: c.shape.clone(),
                    proofs: c.proofs,
                    key_present: c.key.is_some(),
                    constraints: c.key.as_ref().map(|k| k.constraints),
                })
                .collect(),
            chunks_touched: self.chunks.0,
            chunks_total: self.chunks.1,
            estimated_constraints: constraints,
            estimated_seconds: constraints.map(|n| n as f64 * seconds_per_constraint),
            privacy: Some(privacy_terms(&self.plan.schema, &self.plan.circuits, None)),
            remaining_epsilon: self.remaining.map(|c| c.epsilon),
            remaining_delta: self.remaining.map(|c| c.delta),
            path: self.plan.path_reason.clone(),
        }
    }

    /// Constraints over every proof, when every key (so every circuit's size) is known.
    pub fn constraints(&self) -> Option<u64> {
        self.circuits
            .iter()
            .map(|c| c.key.as_ref().map(|k| k.constraints * c.proofs))
            .sum()
    }
}

/// Plans `request` and lists the proofs answering it would need, with the node's keys.
pub async fn explain(
    store: &Store,
    keys: &KeyCache,
    proofs: &ProofCache,
    request: &Request,
) -> Result<Explanation, ProveError> {
    let ctx = SessionContext::new();
    let (plan, manifest) = plan(&ctx, store, keys, proofs, request).await?;
    // Every chunk is proven: no unproven metadata (a time window) may excuse one. From a
    // roll-up, every cell chunk, and its sealings' proofs ride along (made now unless
    // kept).
    let sealings: Vec<&SealingEntry> = plan
        .rollup
        .as_ref()
        .and_then(|name| manifest.manifest.rollups.iter().find(|e| e.name == *name))
        .map(|e| e.sealings.iter().collect())
        .unwrap_or_default();
    let kept = plan.rollup.as_ref().map_or_else(Vec::new, |name| {
        let fan_in = request.limits.combine_inputs;
        KeptSealings {
            keys,
            proofs,
            fan_in,
        }
        .kept(&plan.schema, &manifest.manifest, name)
    });
    let touched = match &plan.rollup {
        None => manifest.manifest.chunks.len() as u64,
        Some(_) => sealings.iter().map(|s| s.cells.len() as u64).sum(),
    };
    let fan_in = request.limits.combine_inputs.max(2) as u64;
    let (mut level, mut subtotals) = (touched, 0);
    while level > fan_in {
        level = level.div_ceil(fan_in);
        subtotals += level;
    }
    let circuit = |role, shape: String, proofs| PlannedCircuit {
        role,
        key: keys.info(&shape),
        shape,
        proofs,
    };
    let mut circuits = vec![circuit(
        "chunk",
        plan.circuits.chunk_shape.description(),
        touched,
    )];
    if subtotals > 0 {
        let shape = CombineShape::subtotal(request.limits.combine_inputs);
        circuits.push(circuit("subtotal", shape.description(), subtotals));
    }
    circuits.push(circuit("root", plan.circuits.root_shape.description(), 1));
    let chunk_shapes = plan.chunk_key_shapes();
    for (role, shape) in chunk_shapes.iter().skip(1) {
        let proofs = sealings
            .iter()
            .zip(&kept)
            .filter(|(_, &kept)| !kept)
            .map(|(s, _)| match *role {
                "sealed rows" => s.chunks.len() as u64,
                _ => s.cells.len() as u64,
            })
            .sum();
        circuits.push(circuit(role, shape.description(), proofs));
    }
    let remaining = match &plan.circuits.noise {
        Some(_) => {
            let spent = store.ledger(&plan.schema.name)?.spent;
            let budget = request.privacy.budget();
            Some(Cost {
                epsilon: budget.epsilon - spent.epsilon,
                delta: budget.delta - spent.delta,
            })
        }
        None => None,
    };
    Ok(Explanation {
        remaining,
        epoch: manifest.manifest.epoch,
        chunks: (touched, touched),
        circuits,
        plan,
        limits: request.limits,
    })
}

impl Plan {
    /// The chunk shapes of every key the answer can need, by role: `chunk` (over rows,
    /// or over a roll-up's cells), and from a roll-up its sealings' `sealed rows` and
    /// `sealed cells`.
    pub fn chunk_key_shapes(&self) -> Vec<(&'static str, AggregateShape)> {
        let mut shapes = vec![("chunk", self.circuits.chunk_shape.clone())];
        let declared = self
            .rollup
            .as_ref()
            .and_then(|name| self.schema.rollups.iter().find(|r| r.name == *name));
        if let Some(Ok(s)) = declared.map(|r| self.schema.rollup_shapes(r, self.schema.chunk_rows))
        {
            shapes.push(("sealed rows", s.rows));
            shapes.push(("sealed cells", s.cells));
        }
        shapes
    }

    /// The combine shapes of every key the answer can need: `root`, and `subtotal` (over
    /// more chunks than one combine opens, and in a roll-up's sealings).
    pub fn combine_key_shapes(&self) -> [(&'static str, CombineShape); 2] {
        let root = &self.circuits.root_shape;
        [
            ("root", root.clone()),
            ("subtotal", CombineShape::subtotal(root.inputs)),
        ]
    }

    /// Every key shape's role and description.
    pub fn key_shapes(&self) -> Vec<(&'static str, String)> {
        let chunks = self
            .chunk_key_shapes()
            .into_iter()
            .map(|(r, s)| (r, s.description()));
        let combines = self
            .combine_key_shapes()
            .into_iter()
            .map(|(r, s)| (r, s.description()));
        chunks.chain(combines).collect()
    }
}

/// Makes (or loads) every key `plan` can need ([`Plan::key_shapes`]). Returns
/// `fingerprint shape` lines, the format of a trusted-keys file.
pub fn setup_keys(keys: &KeyCache, plan: &Plan) -> Result<Vec<String>, ProveError> {
    let mut lines = Vec::new();
    for (_, shape) in plan.chunk_key_shapes() {
        let d = shape.description();
        let pk = keys.get::<AggregateCircuit>(&shape, &d, true, |_| ())?;
        lines.push(format!("{} {d}", snark::fingerprint(pk.verifying_key())));
    }
    for (_, shape) in plan.combine_key_shapes() {
        let d = shape.description();
        let pk = keys.get::<CombineCircuit>(&shape, &d, true, |_| ())?;
        lines.push(format!("{} {d}", snark::fingerprint(pk.verifying_key())));
    }
    Ok(lines)
}

fn verifying_key(pk: &ProvingKey, shape: String) -> pb::VerifyingKey {
    pb::VerifyingKey {
        fingerprint: snark::fingerprint(pk.verifying_key()),
        shape,
        key: snark::verifying_key_to_bytes(pk.verifying_key()),
    }
}

/// The query's predicate over the table: the consent bit, then every filter.
fn predicate(schema: &Schema, query: &ProvableQuery, purpose_bit: u32) -> Expr {
    let consent = &schema.columns[schema.consent()].name;
    let mut conjuncts = vec![binary_expr(
        col(consent.as_str()),
        Operator::BitwiseAnd,
        lit(1u64 << purpose_bit),
    )
    .not_eq(lit(0u64))];
    for f in &query.filters {
        let c = col(f.column.as_str());
        conjuncts.push(match &f.test {
            Test::Range { lo, hi } => c.between(lit(*lo), lit(*hi)),
            Test::In(items) => c.in_list(items.iter().map(|v| lit(*v)).collect(), false),
            Test::Ranges(ranges) => ranges
                .iter()
                .map(|&(lo, hi)| c.clone().between(lit(lo), lit(hi)))
                .reduce(Expr::or)
                .expect("a union has ranges"),
        });
    }
    conjuncts
        .into_iter()
        .reduce(Expr::and)
        .expect("the consent test is always there")
}

/// DataFusion's per-chunk tallies of the canonical query (per group key, the COUNT and
/// the SUM of each aggregand), in one pass.
async fn tallies(
    ctx: &SessionContext,
    schema: &Schema,
    query: &ProvableQuery,
    circuits: &CircuitQuery,
) -> Result<BTreeMap<u64, Tallies>, ProveError> {
    let clips = &circuits.chunk_query.clips;
    let addends: Vec<Expr> = match &query.aggregand {
        Aggregand::CountOnly => Vec::new(),
        // A noisy sum clips each row to its bound, as the chunk circuit does.
        Aggregand::Sum(measures) if !clips.is_empty() => measures
            .iter()
            .zip(clips)
            .map(|(m, &clip)| {
                when(col(m.as_str()).gt(lit(clip)), lit(clip)).otherwise(col(m.as_str()))
            })
            .collect::<Result<_, _>>()?,
        Aggregand::Sum(measures) => measures.iter().map(|m| col(m.as_str())).collect(),
        Aggregand::CountWhere { column, lo, hi, .. } => {
            vec![
                when(col(column.as_str()).between(lit(*lo), lit(*hi)), lit(1u64))
                    .otherwise(lit(0u64))?,
            ]
        }
    };
    let mut group = vec![col(CHUNK_COLUMN)];
    let keyed = !query.group_by.is_empty();
    if keyed {
        // The group key as the chunk circuit packs it: each part's code shifted past the
        // widths of the parts after it; a time bucket's code counted from its origin.
        let shape = &circuits.chunk_shape;
        let mut origins = circuits.chunk_query.origins.iter();
        // (With two parts or more, each is narrower than 64 bits.)
        let key = shape
            .group_by
            .iter()
            .zip(&query.group_by)
            .map(|(part, g)| {
                let column = col(g.column.as_str());
                let code = match part {
                    Grouping::Column(_) => column,
                    Grouping::Bucket(b) => cast(
                        (cast(column, DataType::Int64) - lit(*origins.next().expect("one each")))
                            / lit(b.seconds as i64),
                        DataType::UInt64,
                    ),
                };
                (part.width(&shape.layout), code)
            })
            .reduce(|(_, key), (width, code)| (width, key * lit(1u64 << width) + code))
            .map(|(_, key)| key)
            .expect("GROUP BY names a column");
        group.push(key.alias("group_key"));
    }
    let batches = ctx
        .table(schema.name.as_str())
        .await?
        .filter(predicate(schema, query, circuits.chunk_query.purpose))?
        .aggregate(
            group,
            std::iter::once(count(lit(1u64)))
                .chain(addends.into_iter().map(sum))
                .collect(),
        )?
        .collect()
        .await?;
    let mut out = BTreeMap::<u64, Tallies>::new();
    let counted = 1 + usize::from(keyed);
    for b in &batches {
        let chunk = b.column(0).as_primitive::<UInt64Type>();
        let key = keyed.then(|| b.column(1).as_primitive::<UInt64Type>());
        let counts = b.column(counted).as_primitive::<Int64Type>();
        for r in 0..b.num_rows() {
            let sums = (counted + 1..b.num_columns())
                .map(|c| match b.column(c).as_primitive_opt::<UInt64Type>() {
                    Some(s) if s.is_valid(r) => u128::from(s.value(r)),
                    _ => 0,
                })
                .collect();
            out.entry(chunk.value(r)).or_default().insert(
                key.map_or(0, |k| k.value(r)),
                Tally {
                    count: counts.value(r) as u64,
                    sums,
                },
            );
        }
    }
    Ok(out)
}

/// The answer table from the root combine's result.
pub fn result_table(
    schema: &Schema,
    query: &ProvableQuery,
    circuits: &CircuitQuery,
    result: &CombineResult,
) -> pb::ResultTable {
    let domain = &circuits.root_shape.domain;
    let negate = matches!(query.aggregand, Aggregand::CountWhere { negate: true, .. });
    let rows = (0..domain.slots())
        .map(|slot| {
            let mut row = pb::ResultRow {
                key: domain.key(slot),
                labels: query.group_labels(schema, &domain.codes(slot)),
                ..Default::default()
            };
            match result {
                CombineResult::Release { groups, .. } => match &groups[slot] {
                    GroupRelease::Released { count, sums } => {
                        row.count = *count;
                        row.sums = sums.iter().map(u128::to_string).collect();
                    }
                    GroupRelease::Suppressed => row.suppressed = true,
                },
                CombineResult::Predicate { groups, .. } => match groups[slot] {
                    GroupAnswer::Holds(holds) => row.holds = holds != negate,
                    GroupAnswer::Suppressed => row.suppressed = true,
                },
                CombineResult::Noisy { groups, .. } => match (&groups[slot], &circuits.noise) {
                    (GroupNoisy::Released { count, sums }, Some(plan)) => {
                        row.count = *count;
                        row.sums = sums.iter().map(u128::to_string).collect();
                        row.count_estimate = Some(estimate(
                            plan,
                            u128::from(*count),
                            u128::from(plan.count_step),
                        ));
                        row.sum_estimates = sums
                            .iter()
                            .zip(&plan.sum_steps)
                            .map(|(&sum, &step)| estimate(plan, sum, step))
                            .collect();
                    }
                    _ => row.suppressed = true,
                },
                CombineResult::Subtotal { .. } => unreachable!("the root releases"),
            }
            row
        })
        .collect();
    pb::ResultTable { rows }
}
