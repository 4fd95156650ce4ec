//! The gRPC node that `zkfabric serve` runs: the Catalog, Query, Donor and Admin services
//! of `proto/zkfabric/v1`, Arrow Flight SQL ([`flight`]), gRPC health and server
//! reflection, over one store, on one port.
//!
//! - Catalog is public: everything in it is what verifiers check bundles against.
//! - Query needs a researcher (or admin) bearer token, Admin an admin token
//!   ([`auth`]); donors are anonymous and rate-limited per client address.
//! - Queries are proven one worker at a time (each proof uses every core) from a bounded
//!   queue: when it is full, Run answers RESOURCE_EXHAUSTED at once.
//! - Shutdown (SIGTERM or Ctrl-C) stops accepting calls, cancels running proofs between
//!   two proofs, and returns once every worker has stopped; proving never writes the
//!   store, so it stays consistent.

mod admin;
pub mod auth;
mod catalog;
mod donor;
pub mod flight;
mod query;

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::{
    net::TcpListener,
    sync::{watch, Mutex, OwnedMutexGuard},
};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{
    transport::{Certificate, Identity, Server, ServerTlsConfig},
    Request, Status,
};
use zkfabric_proto::v1::{
    admin_server::AdminServer, catalog_server::CatalogServer, donor_server::DonorServer,
    query_server::QueryServer,
};

use zkfabric_circuits::{
    eligibility::{EligibilityCircuit, WithdrawalCircuit, WithdrawalShape},
    snark::ProvingKey,
};

use crate::{
    node::config::Config,
    node::keys::{KeyCache, KeyError},
    node::proofs::{ProofCache, ProofCacheError},
    node::prove::ProveError,
    node::sql::QueryError,
    node::store::{Store, StoreError},
    node::tables::TablesError,
    shared::credentials,
};

use self::{auth::Tokens, query::ProvingQueue};

/// Why the node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The proof cache could not be opened.
    #[error(transparent)]
    ProofCache(#[from] ProofCacheError),
    /// Listening or serving failed.
    #[error("serving: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The node's keys do not fit its key mode, or the donors' keys could not be loaded
    /// or made.
    #[error("keys: {0}")]
    Keys(String),
    /// The reflection service could not be built.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// A TLS certificate or key file is unreadable.
    #[error("[server.tls] {file}: {source}", file = file.display())]
    TlsFile {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Plaintext beyond loopback, which was not asked for.
    #[error("refusing to serve plaintext gRPC on {0}, which is not a loopback address: bearer tokens and donated records would cross the network in clear. Configure [server.tls] cert and key, or pass --insecure")]
    Plaintext(SocketAddr),
}

/// The TLS the node serves with (`[server.tls]`), after checking that plaintext, when no
/// TLS is configured, is allowed on `address`: on a loopback address, or with
/// `insecure`.
pub fn transport_security(
    config: &crate::node::config::ServerConfig,
    address: SocketAddr,
    insecure: bool,
) -> Result<Option<ServerTlsConfig>, ServerError> {
    let read = |file: &Path| {
        std::fs::read(file).map_err(|source| ServerError::TlsFile {
            file: file.to_path_buf(),
            source,
        })
    };
    let Some(tls) = &config.tls else {
        if !address.ip().is_loopback() && !insecure {
            return Err(ServerError::Plaintext(address));
        }
        return Ok(None);
    };
    let mut server =
        ServerTlsConfig::new().identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?));
    if let Some(ca) = &tls.client_ca {
        server = server.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(Some(server))
}

/// What every service shares: the store, the keys, the configuration and the queue.
pub(crate) struct Node {
    store: Arc<Mutex<Store>>,
    data_dir: PathBuf,
    keys: KeyCache,
    /// Chunk proofs kept for reuse.
    proofs: ProofCache,
    config: Config,
    tokens: Tokens,
    queue: ProvingQueue,
    donors: DefaultKeyedRateLimiter<IpAddr>,
    /// The key manifests and receipts are signed with; also the donors' nullifier scope.
    node_key: ed25519_dalek::VerifyingKey,
    shutdown: watch::Receiver<bool>,
}

impl Node {
    /// Runs `f` with the store on a blocking thread (SQLite and file I/O block), after
    /// waiting at most the configured request timeout for the store: DEADLINE_EXCEEDED
    /// if it stays busy (a long seal, say). Once started, `f` runs to completion, so a
    /// call never half-happens.
    async fn with_store<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Store) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let wait = Duration::from_secs(self.config.server.request_timeout_secs.max(1));
        let store = tokio::time::timeout(wait, self.store.clone().lock_owned())
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "the store stayed busy for {} s (sealing or making keys); try again",
                    wait.as_secs()
                ))
            })?;
        Self::on_store(store, f).await
    }

    /// [`Node::with_store`] without a deadline on the wait: for administrators' calls.
    async fn with_store_waiting<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Store) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        Self::on_store(self.store.clone().lock_owned().await, f).await
    }

    async fn on_store<T: Send + 'static>(
        mut store: OwnedMutexGuard<Store>,
        f: impl FnOnce(&mut Store) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        tokio::task::spawn_blocking(move || f(&mut store))
            .await
            .map_err(|e| Status::internal(format!("store task failed: {e}")))?
    }

    /// A proving key the node publishes for donors: the eligibility circuit's or the
    /// withdrawal circuit's, by shape (a development key is made on first use).
    fn donor_key(&self, shape: &str) -> Result<Arc<ProvingKey>, Status> {
        let warn = |shape: &str| tracing::warn!(shape, "making a development key for donors");
        let key = if let Some(eligibility) = credentials::published_shape(shape) {
            self.keys
                .get::<EligibilityCircuit>(&eligibility, shape, true, warn)
        } else if shape == credentials::WITHDRAWAL_SHAPE {
            self.keys
                .get::<WithdrawalCircuit>(&WithdrawalShape, shape, true, warn)
        } else {
            return Err(Status::not_found(format!(
                "no proving key is published for {shape:?}; donors use the eligibility shape \
                 of a dataset's donor policy (DescribeDataset) and {}",
                credentials::WITHDRAWAL_SHAPE
            )));
        };
        key.map_err(internal)
    }

    /// Refuses a donor call when the caller's address has used up its quota.
    fn limit_donor<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let address = request
            .remote_addr()
            .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        // One entry per address seen: forget those whose quota is full again.
        if self.donors.len() > 10_000 {
            self.donors.retain_recent();
        }
        self.donors.check_key(&address).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            Status::resource_exhausted(format!(
                "too many donor calls from {address}: at most {} a minute; retry in {:.1} s",
                self.config.server.donations_per_minute,
                wait.as_secs_f64()
            ))
        })
    }
}

/// Serves the node on `listener`, over `tls` when given (see [`transport_security`]),
/// until `shutdown` resolves, then cancels running proofs and waits for the workers to
/// stop.
pub async fn serve(
    config: Config,
    data_dir: &Path,
    listener: TcpListener,
    tls: Option<ServerTlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let mut store = Store::open(data_dir)?;
    // Datasets that take donations exist from the start, so donors can read their policy.
    let mut donor_shapes = vec![credentials::WITHDRAWAL_SHAPE.to_string()];
    for dataset in config.donors.keys() {
        store.register_on_first_use(dataset, |d| config.builtin_schema(d))?;
        donor_shapes.push(credentials::shape(&store.schema(dataset)?).description());
    }
    let node_key = store.node_key();
    let server = &config.server;
    let per_minute = NonZeroU32::new(server.donations_per_minute).unwrap_or(NonZeroU32::MIN);
    let (stop, stopped) = watch::channel(false);
    let node = Arc::new(Node {
        store: Arc::new(Mutex::new(store)),
        data_dir: data_dir.to_path_buf(),
        keys: KeyCache::new(data_dir).with_mode(config.keys.mode),
        proofs: ProofCache::open(data_dir, config.query.proof_cache_entries)?,
        tokens: Tokens::new(&server.tokens),
        queue: ProvingQueue::new(
            server.proving_workers,
            server.queue_capacity,
            server.queries_per_token,
        ),
        donors: RateLimiter::keyed(Quota::per_minute(per_minute)),
        node_key,
        shutdown: stopped,
        config: config.clone(),
    });
    let limit = server.max_message_bytes;
    let (health, health_service) = tonic_health::server::health_reporter();
    let catalog = CatalogServer::new(catalog::CatalogService(node.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let query = QueryServer::new(query::QueryService(node.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let donor = DonorServer::new(donor::DonorService(node.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let admin = AdminServer::new(admin::AdminService(node.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    health
        .set_serving::<CatalogServer<catalog::CatalogService>>()
        .await;
    health
        .set_serving::<QueryServer<query::QueryService>>()
        .await;
    health
        .set_serving::<DonorServer<donor::DonorService>>()
        .await;
    health
        .set_serving::<AdminServer<admin::AdminService>>()
        .await;
    let flight = flight::server(node.clone(), limit);
    health.set_serving::<flight::FlightServer>().await;
    // Reflection in both versions: v1, and v1alpha, which stock clients such as Python's
    // grpcio-reflection still speak.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(zkfabric_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    node.keys
        .check_mode()
        .map_err(|e| ServerError::Keys(e.to_string()))?;
    if !node.config.donors.is_empty() {
        // Donors fetch these keys to prove eligibility; make them before the first asks.
        let keys_node = node.clone();
        tokio::task::spawn_blocking(move || {
            donor_shapes
                .iter()
                .try_for_each(|shape| keys_node.donor_key(shape).map(drop))
        })
        .await
        .map_err(|e| ServerError::Keys(e.to_string()))?
        .map_err(|e| ServerError::Keys(e.message().to_string()))?;
    }
    let address = listener.local_addr().ok();
    tracing::info!(?address, "serving");
    let signal = {
        let health = health.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: cancelling running proofs");
            let _ = stop.send(true);
            health
                .set_not_serving::<QueryServer<query::QueryService>>()
                .await;
        }
    };
    // Deadlines: a client's grpc-timeout is honoured; the node bounds how long a call
    // waits for the store (`with_store`), not how long Admin calls or Run's stream take.
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    builder
        .concurrency_limit_per_connection(server.max_concurrent_requests)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(catalog)
        .add_service(query)
        .add_service(donor)
        .add_service(admin)
        .add_service(flight)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal)
        .await?;
    node.queue.drain().await;
    tracing::info!("stopped");
    Ok(())
}

/// Binds `address` (port 0 picks a free one).
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The gRPC status of a store error.
fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::UnknownDataset(_)
        | StoreError::UnknownEpoch { .. }
        | StoreError::UnknownDonation(_) => Status::not_found(e.to_string()),
        StoreError::Records(_)
        | StoreError::Donation(_)
        | StoreError::SchemaChanged(_)
        | StoreError::Unit(_) => Status::invalid_argument(e.to_string()),
        StoreError::WrongSecret(_) => Status::permission_denied(e.to_string()),
        StoreError::Duplicate(_) => Status::already_exists(e.to_string()),
        StoreError::NotWithdrawable { .. } | StoreError::Erased { .. } => {
            Status::failed_precondition(e.to_string())
        }
        StoreError::BudgetExhausted { .. } => Status::resource_exhausted(e.to_string()),
        other => internal(other),
    }
}

/// The gRPC status of a query that could not be planned or answered.
fn prove_status(e: ProveError) -> Status {
    match e {
        ProveError::Query(QueryError::Sql(_))
        | ProveError::Query(_)
        | ProveError::Shape(_)
        | ProveError::Privacy(_) => Status::invalid_argument(e.to_string()),
        ProveError::Store(e) | ProveError::Tables(TablesError::Store(e)) => store_status(e),
        ProveError::Keys(KeyError::Missing { .. }) => Status::failed_precondition(format!(
            "{e}: an administrator makes it with the Admin.Setup call"
        )),
        ProveError::Keys(KeyError::NoCeremonyKey { .. }) => {
            Status::failed_precondition(e.to_string())
        }
        ProveError::Cancelled => Status::unavailable(e.to_string()),
        other => internal(other),
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "internal error");
    Status::internal(e.to_string())
}
