//! The Query service: Explain, Run (a bounded proving queue, progress streamed) and
//! GetBundle. Needs a researcher or admin token.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Instant,
};

use prost::Message;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status};
use zkfabric_proto::v1::{self as pb, query_server, run_event::Event};

use super::{internal, prove_status, Node};
use crate::{
    node::config::Role,
    node::keys::KeyMode,
    node::prove::{self, Explanation, Progress, ProveError},
    node::store::sha256_hex,
    verifier::bundle,
};

/// Serves [`query_server::Query`].
pub(crate) struct QueryService(pub Arc<Node>);

/// A proving worker held: proving may start; `cancel` is set when the node shuts down.
struct ProvingTurn {
    _worker: OwnedSemaphorePermit,
    cancel: Arc<AtomicBool>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Drop for ProvingTurn {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// Proving slots: `workers` queries proven at once, `capacity` more waiting, at most
/// `per_token` of them one token's.
pub(crate) struct ProvingQueue {
    slots: Arc<Semaphore>,
    workers: Arc<Semaphore>,
    total: u32,
    per_token: usize,
    /// Queries queued or proving, by the name of the token that asked.
    held: Arc<Mutex<HashMap<String, usize>>>,
    waiting: AtomicUsize,
    /// Measured seconds per constraint of the latest answers, for estimates.
    seconds_per_constraint: Mutex<Option<f64>>,
}

impl ProvingQueue {
    pub(crate) fn new(workers: usize, capacity: usize, per_token: usize) -> Self {
        let total = (workers + capacity) as u32;
        Self {
            slots: Arc::new(Semaphore::new(total as usize)),
            workers: Arc::new(Semaphore::new(workers)),
            total,
            per_token,
            held: Arc::default(),
            waiting: AtomicUsize::new(0),
            seconds_per_constraint: Mutex::new(None),
        }
    }

    /// A place in the queue for `caller`'s query, or RESOURCE_EXHAUSTED with the queue's
    /// length, or with the token's own limit.
    fn enter(&self, caller: &str) -> Result<Place, Status> {
        let mut held = self
            .held
            .lock()
            .map_err(|_| Status::internal("queue poisoned"))?;
        let mine = held.get(caller).copied().unwrap_or(0);
        if mine >= self.per_token {
            return Err(Status::resource_exhausted(format!(
                "token `{caller}` has {mine} queries queued or proving, the most one token \
                 may; wait for one to finish"
            )));
        }
        let slot = self.slots.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "the proving queue is full: {} queries queued or proving, the most this node \
                 takes; retry later",
                self.total
            ))
        })?;
        *held.entry(caller.to_string()).or_default() += 1;
        Ok(Place {
            _slot: slot,
            caller: caller.to_string(),
            held: self.held.clone(),
        })
    }

    /// Waits until every query has finished or been cancelled.
    pub(crate) async fn drain(&self) {
        let _ = self.slots.acquire_many(self.total).await;
    }

    fn estimate(&self) -> f64 {
        self.seconds_per_constraint
            .lock()
            .ok()
            .and_then(|r| *r)
            .unwrap_or_else(prove::assumed_seconds_per_constraint)
    }

    fn measured(&self, constraints: u64, seconds: f64) {
        if constraints > 0 {
            if let Ok(mut rate) = self.seconds_per_constraint.lock() {
                let now = seconds / constraints as f64;
                // A moving average: recent answers count most.
                *rate = Some(rate.map_or(now, |r| 0.7 * now + 0.3 * r));
            }
        }
    }
}

/// A query's place in the queue: its slot, and its count against its token's limit,
/// both given back when it is dropped.
pub(crate) struct Place {
    _slot: OwnedSemaphorePermit,
    caller: String,
    held: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Ok(mut held) = self.held.lock() {
            if let Some(mine) = held.get_mut(&self.caller) {
                *mine -= 1;
                if *mine == 0 {
                    held.remove(&self.caller);
                }
            }
        }
    }
}

impl Node {
    /// The prove request of a call, with this node's defaults; `setup` allows making
    /// missing keys.
    pub(super) fn prove_request(
        &self,
        q: pb::QueryRequest,
        setup: bool,
    ) -> Result<prove::Request, Status> {
        let purpose = (!q.purpose.is_empty()).then_some(q.purpose);
        let mut request = prove::Request::new(&self.config, q.sql, purpose, q.epoch, setup)
            .with_privacy(q.epsilon, q.delta, (!q.nonce.is_empty()).then_some(q.nonce))
            .map_err(prove_status)?;
        request.path = prove::QueryPath::parse(&q.path).map_err(prove_status)?;
        if request.purpose.is_empty() {
            return Err(Status::invalid_argument(
                "name the query's consent purpose (the node has no default purpose)",
            ));
        }
        Ok(request)
    }

    async fn explain(self: &Arc<Self>, request: prove::Request) -> Result<Explanation, Status> {
        let node = self.clone();
        self.with_store(move |store| {
            tokio::runtime::Handle::current()
                .block_on(prove::explain(store, &node.keys, &node.proofs, &request))
                .map_err(prove_status)
        })
        .await
    }

    fn bundle_path(&self, id: &str) -> PathBuf {
        self.data_dir.join("bundles").join(format!("{id}.zkf"))
    }

    /// Proves a queued query, streaming its progress into `events`.
    async fn run_job(
        self: Arc<Self>,
        request: prove::Request,
        constraints: Option<u64>,
        ticket: Place,
        events: mpsc::UnboundedSender<Result<pb::RunEvent, Status>>,
    ) {
        let send = |event| events.send(Ok(pb::RunEvent { event: Some(event) })).is_ok();
        let position = self.queue.waiting.fetch_add(1, Ordering::SeqCst) + 1;
        send(Event::Queued(pb::Queued {
            position: position as u32,
        }));
        let turn = self.proving_turn().await;
        self.queue.waiting.fetch_sub(1, Ordering::SeqCst);
        let Some(turn) = turn else {
            let _ = events.send(Err(prove_status(ProveError::Cancelled)));
            return;
        };
        let started = Instant::now();
        let node = self.clone();
        let progress_events = events.clone();
        let job_cancel = turn.cancel.clone();
        let result = tokio::task::spawn_blocking(move || {
            let events = progress_events;
            let send = |event| events.send(Ok(pb::RunEvent { event: Some(event) })).is_ok();
            let handle = tokio::runtime::Handle::current();
            let prepared = {
                let store = node.store.blocking_lock();
                handle
                    .block_on(prove::prepare(&store, &node.keys, &node.proofs, &request))
                    .map_err(prove_status)?
            };
            let total = prepared.chunk_count() as u64;
            let chunk_rows = prepared.plan().schema.chunk_rows as f64;
            send(Event::Started(pb::Started { chunks: total }));
            let done = AtomicU64::new(0);
            let reused_count = AtomicU64::new(0);
            let proving = Instant::now();
            let progress = |p: Progress| {
                let delivered = match p {
                    Progress::ChunkProven { reused } => {
                        let done = done.fetch_add(1, Ordering::Relaxed) + 1;
                        let reused = reused_count.fetch_add(u64::from(reused), Ordering::Relaxed)
                            + u64::from(reused);
                        send(Event::ChunkProven(pb::ChunkProven {
                            done,
                            total,
                            reused,
                            rows_per_second: done as f64 * chunk_rows
                                / proving.elapsed().as_secs_f64().max(1e-9),
                        }))
                    }
                    Progress::Combining => send(Event::Combining(pb::Combining {})),
                    Progress::Setup => {
                        tracing::warn!("making a development key for a researcher's query");
                        true
                    }
                    Progress::Proving { .. } => true,
                };
                // The caller went away: stop proving.
                if !delivered {
                    job_cancel.store(true, Ordering::Relaxed);
                }
            };
            handle
                .block_on(prove::prove(
                    prepared,
                    &node.keys,
                    &node.proofs,
                    &request,
                    progress,
                    &job_cancel,
                ))
                .map_err(prove_status)
        })
        .await;
        drop(turn);
        let outcome = match result {
            Ok(Ok(bundle)) => {
                let seconds = started.elapsed().as_secs_f64();
                if let Some(n) = constraints {
                    self.queue.measured(n, seconds);
                }
                self.keep_bundle(&bundle).map(|id| {
                    Event::Finished(pb::Finished {
                        bundle_id: id,
                        bundle: Some(bundle),
                        seconds,
                    })
                })
            }
            Ok(Err(status)) => Err(status),
            Err(e) => Err(internal(format!("proving task failed: {e}"))),
        };
        match outcome {
            Ok(event) => {
                send(event);
            }
            Err(status) => {
                let _ = events.send(Err(status));
            }
        }
        drop(ticket);
    }

    /// Waits for a proving worker (`None` when the node shuts down first); the turn's
    /// `cancel` is set if the node shuts down while it proves.
    async fn proving_turn(self: &Arc<Self>) -> Option<ProvingTurn> {
        let mut shutdown = self.shutdown.clone();
        let worker = tokio::select! {
            permit = self.queue.workers.clone().acquire_owned() => permit.ok(),
            _ = shutdown.wait_for(|stop| *stop) => None,
        }?;
        let cancel = Arc::new(AtomicBool::new(false));
        let watcher = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
                cancel.store(true, Ordering::Relaxed);
            })
        };
        Some(ProvingTurn {
            _worker: worker,
            cancel,
            watcher,
        })
    }

    /// Proves roll-up sealings in a proving worker's turn (so they never compete with
    /// queries for the cores), stopping if the node shuts down; how many were proven (a
    /// sealing whose keys a ceremony node lacks waits, and is not counted).
    pub(super) async fn prove_sealings(
        self: &Arc<Self>,
        sealings: Vec<prove::LoadedSealing>,
    ) -> Result<usize, Status> {
        let turn = self
            .proving_turn()
            .await
            .ok_or_else(|| prove_status(ProveError::Cancelled))?;
        let node = self.clone();
        let cancel = turn.cancel.clone();
        let result = tokio::task::spawn_blocking(move || {
            let sealing = prove::Sealing {
                keys: &node.keys,
                proofs: &node.proofs,
                setup: node.keys.mode() == KeyMode::Development,
                fan_in: node.config.query.combine_inputs,
                cancel: &cancel,
            };
            let mut proven = 0;
            for loaded in &sealings {
                match sealing.prove(loaded, |_| ()) {
                    Ok(_) => proven += 1,
                    Err(ProveError::Keys(e)) => {
                        tracing::warn!("a roll-up sealing waits for keys: {e}")
                    }
                    Err(e) => return Err(prove_status(e)),
                }
            }
            Ok(proven)
        })
        .await;
        drop(turn);
        result.map_err(|e| internal(format!("proving task failed: {e}")))?
    }

    /// Admits `request` to the proving queue for `caller` and starts proving it; returns
    /// its events (progress, then the bundle). Refuses what cannot be answered (the SQL,
    /// a missing key) before taking a place in the queue, and RESOURCE_EXHAUSTED when
    /// the queue is full. Proving stops if the receiver is dropped.
    pub(super) async fn enqueue(
        self: &Arc<Self>,
        request: prove::Request,
        caller: &str,
    ) -> Result<mpsc::UnboundedReceiver<Result<pb::RunEvent, Status>>, Status> {
        let explanation = self.explain(request.clone()).await?;
        if !request.setup {
            if let Some(c) = explanation
                .circuits
                .iter()
                .find(|c| !self.keys.has(&c.shape))
            {
                return Err(Status::failed_precondition(format!(
                    "no proving key for {}: an administrator makes it with the Admin.Setup call",
                    c.shape
                )));
            }
        }
        let ticket = self.queue.enter(caller)?;
        tracing::info!(
            caller,
            dataset = explanation.plan.schema.name,
            epoch = explanation.epoch,
            chunks = explanation.chunks.0,
            "query queued"
        );
        let (events, stream) = mpsc::unbounded_channel();
        tokio::spawn(
            self.clone()
                .run_job(request, explanation.constraints(), ticket, events),
        );
        Ok(stream)
    }

    /// A finished bundle by the id its answer returned (32 hex digits).
    pub(super) fn read_bundle(&self, id: &str) -> Result<pb::Bundle, Status> {
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Status::invalid_argument(format!(
                "bundle id {id:?}: expected the 32 hex digits a Run returned"
            )));
        }
        let path = self.bundle_path(id);
        if !path.exists() {
            return Err(Status::not_found(format!("no bundle {id}")));
        }
        bundle::read(&path).map_err(internal)
    }

    /// Writes a finished bundle under `DATA_DIR/bundles`, named by its content.
    fn keep_bundle(&self, bundle: &pb::Bundle) -> Result<String, Status> {
        let id = sha256_hex(&bundle.encode_to_vec())[..32].to_string();
        let path = self.bundle_path(&id);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(internal)?;
        }
        bundle::write(bundle, &path, false).map_err(internal)?;
        Ok(id)
    }
}

#[tonic::async_trait]
impl query_server::Query for QueryService {
    async fn explain(
        &self,
        request: Request<pb::QueryRequest>,
    ) -> Result<Response<pb::ExplainResponse>, Status> {
        self.0.tokens.require(&request, Role::Researcher)?;
        let request = self.0.prove_request(request.into_inner(), false)?;
        let explanation = self.0.explain(request).await?;
        Ok(Response::new(explanation.to_proto(self.0.queue.estimate())))
    }

    type RunStream = UnboundedReceiverStream<Result<pb::RunEvent, Status>>;

    async fn run(
        &self,
        request: Request<pb::QueryRequest>,
    ) -> Result<Response<Self::RunStream>, Status> {
        let caller = self.0.tokens.require(&request, Role::Researcher)?;
        let setup = self.0.config.server.setup_missing_keys;
        let request = self.0.prove_request(request.into_inner(), setup)?;
        let stream = self.0.enqueue(request, &caller).await?;
        Ok(Response::new(UnboundedReceiverStream::new(stream)))
    }

    async fn get_bundle(
        &self,
        request: Request<pb::GetBundleRequest>,
    ) -> Result<Response<pb::Bundle>, Status> {
        self.0.tokens.require(&request, Role::Researcher)?;
        let bundle = self.0.read_bundle(&request.into_inner().bundle_id)?;
        Ok(Response::new(bundle))
    }
}
