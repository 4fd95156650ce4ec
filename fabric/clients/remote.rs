//! A client of a zkfabric node over gRPC: what `zkfabric query|verify|catalog --remote`
//! and the examples use. Bundles fetched from a node are verified locally with
//! [`crate::verifier::verify`]; a node is never trusted for that.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use prost::Message;
use tonic::{
    metadata::MetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
    Request, Status,
};
use zkfabric_proto::v1::{
    self as pb, admin_client::AdminClient, catalog_client::CatalogClient,
    donor_client::DonorClient, query_client::QueryClient, run_event::Event,
};

use zkfabric_circuits::{
    eligibility::{EligibilityCircuit, WithdrawalCircuit, WithdrawalShape},
    snark::ProvingKey,
};

use crate::{
    node::store::DatasetSummary,
    shared::credentials::{self, CredentialFile, HolderKey, OrganisationKey},
    verifier::bundle::{self, BundleError},
    verifier::manifest::{parse_ed25519_key, SignedManifest},
    verifier::schema::Schema,
};

/// Largest message a client accepts (bundles carry every proof and verifying key).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Why a call to a node failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The node could not be reached.
    #[error("connecting to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// A certificate or key file for TLS is unreadable.
    #[error("{file}: {source}", file = file.display())]
    TlsFile {
        file: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The node answered with an error status.
    #[error("the node answered {}: {}", .0.code(), .0.message())]
    Status(#[from] Status),
    /// The node's answer is malformed or does not check out.
    #[error("the node's answer: {0}")]
    Invalid(String),
}

impl From<BundleError> for RemoteError {
    fn from(e: BundleError) -> Self {
        Self::Invalid(e.to_string())
    }
}

/// A connection to a node, with the bearer token researchers and administrators send.
#[derive(Clone)]
pub struct Remote {
    channel: Channel,
    token: Option<String>,
}

/// How a client authenticates a node served over TLS (`https://` URLs), and itself when
/// the node asks for client certificates.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// A PEM file of the certificate authority the node's certificate must chain to;
    /// without it, the system's trusted roots.
    pub ca: Option<std::path::PathBuf>,
    /// This client's certificate and key (PEM), for a node that requires client
    /// certificates (mutual TLS).
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

fn read_pem(file: &std::path::Path) -> Result<Vec<u8>, RemoteError> {
    std::fs::read(file).map_err(|source| RemoteError::TlsFile {
        file: file.to_path_buf(),
        source,
    })
}

impl Remote {
    /// Connects to `url`: `http://127.0.0.1:50051` in plaintext (loopback), or
    /// `https://node.example:50051` over TLS checked against the system's roots.
    pub async fn connect(url: &str, token: Option<String>) -> Result<Self, RemoteError> {
        Self::connect_with(url, token, &ClientTls::default()).await
    }

    /// Connects to `url` with `tls` for `https://` URLs (ignored for `http://`).
    pub async fn connect_with(
        url: &str,
        token: Option<String>,
        tls: &ClientTls,
    ) -> Result<Self, RemoteError> {
        let connect = |source| RemoteError::Connect {
            url: url.to_string(),
            source,
        };
        let mut endpoint = Endpoint::from_shared(url.to_string()).map_err(connect)?;
        if url.starts_with("https://") {
            let mut config = ClientTlsConfig::new().with_native_roots();
            if let Some(ca) = &tls.ca {
                config = config.ca_certificate(Certificate::from_pem(read_pem(ca)?));
            }
            if let Some((cert, key)) = &tls.identity {
                config = config.identity(Identity::from_pem(read_pem(cert)?, read_pem(key)?));
            }
            endpoint = endpoint.tls_config(config).map_err(connect)?;
        }
        let channel = endpoint.connect().await.map_err(connect)?;
        Ok(Self { channel, token })
    }

    /// `message` with the bearer token, if any.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(token) = &self.token {
            if let Ok(value) = MetadataValue::try_from(format!("Bearer {token}")) {
                request.metadata_mut().insert("authorization", value);
            }
        }
        request
    }

    /// The Catalog client.
    pub fn catalog(&self) -> CatalogClient<Channel> {
        CatalogClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// The Query client.
    pub fn query(&self) -> QueryClient<Channel> {
        QueryClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// The Donor client.
    pub fn donor(&self) -> DonorClient<Channel> {
        DonorClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// The Admin client.
    pub fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Every dataset's summary.
    pub async fn datasets(&self) -> Result<Vec<DatasetSummary>, RemoteError> {
        let response = self
            .catalog()
            .list_datasets(self.request(pb::ListDatasetsRequest {}))
            .await?;
        Ok(response
            .into_inner()
            .datasets
            .into_iter()
            .map(|d| DatasetSummary {
                name: d.name,
                latest_epoch: d.latest_epoch,
                chunks: d.chunks,
                rows: d.rows,
                pending: d.pending,
            })
            .collect())
    }

    /// An epoch's signed manifest (the latest when `None`), its signature checked against
    /// the key it names.
    pub async fn manifest(
        &self,
        dataset: &str,
        epoch: Option<u64>,
    ) -> Result<SignedManifest, RemoteError> {
        let response = self
            .catalog()
            .get_manifest(self.request(pb::GetManifestRequest {
                dataset: dataset.to_string(),
                epoch,
            }))
            .await?;
        let manifest = bundle::manifest_from_proto(Some(&response.into_inner()))?;
        manifest
            .verify(None)
            .map_err(|e| RemoteError::Invalid(format!("manifest: {e}")))?;
        Ok(manifest)
    }

    /// The signed manifests of `dataset` after epoch `after`, up to the latest: the chain
    /// a verifier follows from a bundle's epoch to the head it pinned.
    pub async fn manifests_after(
        &self,
        dataset: &str,
        after: u64,
    ) -> Result<Vec<SignedManifest>, RemoteError> {
        let latest = self.manifest(dataset, None).await?;
        let mut out = Vec::new();
        for epoch in after.saturating_add(1)..latest.manifest.epoch {
            out.push(self.manifest(dataset, Some(epoch)).await?);
        }
        if latest.manifest.epoch > after {
            out.push(latest);
        }
        Ok(out)
    }

    /// A dataset's privacy ledger, as the node publishes it.
    pub async fn ledger(&self, dataset: &str) -> Result<pb::Ledger, RemoteError> {
        Ok(self
            .catalog()
            .get_ledger(self.request(pb::GetLedgerRequest {
                dataset: dataset.to_string(),
            }))
            .await?
            .into_inner())
    }

    /// The node's public key.
    pub async fn node_key(&self) -> Result<VerifyingKey, RemoteError> {
        let key = self
            .catalog()
            .get_node_key(self.request(pb::GetNodeKeyRequest {}))
            .await?
            .into_inner()
            .key;
        parse_ed25519_key(&key).map_err(RemoteError::Invalid)
    }

    /// Runs a verified query, calling `on_event` with each progress event; returns the
    /// bundle id and the bundle.
    pub async fn run(
        &self,
        request: pb::QueryRequest,
        mut on_event: impl FnMut(&Event),
    ) -> Result<(String, pb::Bundle), RemoteError> {
        let mut stream = self.query().run(self.request(request)).await?.into_inner();
        while let Some(event) = stream.message().await? {
            match event.event {
                Some(Event::Finished(f)) => {
                    let bundle = f.bundle.ok_or_else(|| {
                        RemoteError::Invalid("a run finished without a bundle".into())
                    })?;
                    return Ok((f.bundle_id, bundle));
                }
                Some(other) => on_event(&other),
                None => {}
            }
        }
        Err(RemoteError::Invalid(
            "the progress stream ended without an answer".into(),
        ))
    }
}

/// What a donation brings to a dataset's donor policy.
pub enum DonorProof<'a> {
    /// Nothing (the dataset has no policy).
    None,
    /// A holder's key and the credential an issuer gave them: eligibility is proven.
    Credential {
        /// The holder's key.
        holder: &'a HolderKey,
        /// The credential.
        credential: &'a CredentialFile,
    },
    /// An organisation's key: the bulk donation is signed.
    Organisation(&'a OrganisationKey),
}

impl Remote {
    /// Donates `records` to `dataset` for `purposes` with `proof`: a credential proves
    /// eligibility here, against the policy and with the proving key the node publishes;
    /// an organisation signs. Checks the node's signed receipt; returns what it attests
    /// and the withdrawal secret.
    pub async fn donate(
        &self,
        dataset: &str,
        format: pb::RecordFormat,
        records: Vec<u8>,
        purposes: Vec<String>,
        proof: DonorProof<'_>,
    ) -> Result<(pb::ReceiptBody, String), RemoteError> {
        let invalid = |e: credentials::DonorError| RemoteError::Invalid(e.to_string());
        let node_key = self.node_key().await?;
        let (eligibility, organisation) = match proof {
            DonorProof::None => (None, None),
            DonorProof::Organisation(key) => (
                None,
                Some(key.sign(dataset, &records, &purposes).map_err(invalid)?),
            ),
            DonorProof::Credential { holder, credential } => {
                let description = self
                    .catalog()
                    .describe_dataset(pb::DescribeDatasetRequest {
                        dataset: dataset.to_string(),
                    })
                    .await?
                    .into_inner();
                let policy = description.donor_policy.ok_or_else(|| {
                    RemoteError::Invalid(format!("{dataset} takes no eligibility proof"))
                })?;
                let schema = Schema::parse("the node's schema", &description.schema)
                    .map_err(|e| RemoteError::Invalid(e.to_string()))?;
                let shape = credentials::policy_shape(&policy).map_err(invalid)?;
                if shape != credentials::shape(&schema) {
                    return Err(RemoteError::Invalid(format!(
                        "the policy's eligibility circuit {} does not bind the schema's \
                         credential-backed columns",
                        policy.shape
                    )));
                }
                let key = self
                    .catalog()
                    .get_proving_key(pb::GetProvingKeyRequest {
                        shape: policy.shape.clone(),
                    })
                    .await?
                    .into_inner();
                let pk = ProvingKey::from_bytes::<EligibilityCircuit>(&key.key, &shape)
                    .map_err(|e| RemoteError::Invalid(format!("eligibility key: {e}")))?;
                let (holding, issuer) =
                    credentials::holding(holder, credential, "credential").map_err(invalid)?;
                let rows = credentials::bound_rows_of(&schema, &records, format, &purposes)
                    .map_err(invalid)?;
                let proving = credentials::Proving {
                    policy: &policy,
                    pk: &pk,
                    node_key: &node_key,
                    dataset,
                    records: &records,
                    rows: &rows,
                };
                let proof = credentials::prove(&proving, holding, issuer).map_err(invalid)?;
                (Some(proof), None)
            }
        };
        let response = self
            .donor()
            .donate(pb::DonateRequest {
                dataset: dataset.to_string(),
                format: format as i32,
                records,
                purposes,
                eligibility,
                organisation,
            })
            .await?
            .into_inner();
        let receipt = response
            .receipt
            .ok_or_else(|| RemoteError::Invalid("no receipt".into()))?;
        let body = verify_receipt(&receipt, Some(&node_key))?;
        Ok((body, response.withdrawal_secret))
    }
}

/// How a donor authorises a withdrawal.
pub enum WithdrawWith<'a> {
    /// The withdrawal secret the receipt came with.
    Secret(&'a str),
    /// The holder key behind the donation's nullifier: a proof of its secret is made here.
    Holder(&'a HolderKey),
}

impl Remote {
    /// Withdraws the donation with receipt `id`; returns what the node's signed receipt
    /// now attests (withdrawn, and from which epoch its rows are excluded).
    pub async fn withdraw(
        &self,
        id: &str,
        with: WithdrawWith<'_>,
    ) -> Result<pb::ReceiptBody, RemoteError> {
        let node_key = self.node_key().await?;
        let mut request = pb::WithdrawRequest {
            id: id.to_string(),
            ..Default::default()
        };
        match with {
            WithdrawWith::Secret(secret) => request.withdrawal_secret = secret.to_string(),
            WithdrawWith::Holder(holder) => {
                let current = self
                    .donor()
                    .get_receipt(pb::GetReceiptRequest { id: id.to_string() })
                    .await?
                    .into_inner();
                let dataset = verify_receipt(&current, Some(&node_key))?.dataset;
                let key = self
                    .catalog()
                    .get_proving_key(pb::GetProvingKeyRequest {
                        shape: credentials::WITHDRAWAL_SHAPE.into(),
                    })
                    .await?
                    .into_inner();
                let pk = ProvingKey::from_bytes::<WithdrawalCircuit>(&key.key, &WithdrawalShape)
                    .map_err(|e| RemoteError::Invalid(format!("withdrawal key: {e}")))?;
                let secret = credentials::fr_from_hex(&holder.secret)
                    .ok_or_else(|| RemoteError::Invalid("the holder key's secret".into()))?;
                request.nullifier_proof =
                    credentials::prove_withdrawal(&pk, secret, &node_key, &dataset, id)
                        .map_err(|e| RemoteError::Invalid(e.to_string()))?;
            }
        }
        let receipt = self.donor().withdraw(request).await?.into_inner();
        verify_receipt(&receipt, Some(&node_key))
    }
}

/// Checks a receipt's signature (against `node_key` when given, else the key it names)
/// and returns what it attests.
pub fn verify_receipt(
    receipt: &pb::Receipt,
    node_key: Option<&VerifyingKey>,
) -> Result<pb::ReceiptBody, RemoteError> {
    let invalid = |m: &str| RemoteError::Invalid(format!("receipt: {m}"));
    let named = parse_ed25519_key(&receipt.node_key).map_err(|e| invalid(&e))?;
    if node_key.is_some_and(|k| *k != named) {
        return Err(invalid("signed by another node key"));
    }
    let signature =
        Signature::from_slice(&receipt.signature).map_err(|_| invalid("bad signature"))?;
    named
        .verify(&receipt.body, &signature)
        .map_err(|_| invalid("signature does not verify"))?;
    pb::ReceiptBody::decode(&receipt.body[..]).map_err(|e| invalid(&e.to_string()))
}
