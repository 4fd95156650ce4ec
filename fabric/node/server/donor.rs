//! The Donor service: anonymous donations with signed receipts, and withdrawal of pending
//! donations. Every call is rate-limited per client address.

use std::sync::Arc;

use prost::Message;
use tonic::{Request, Response, Status};
use zkfabric_proto::v1::{self as pb, donor_server::Donor};

use super::{internal, store_status, Node};
use crate::{
    node::donor,
    node::store::{sha256_hex, Donation, Store, Withdrawal},
    shared::credentials::{self, DonorError},
};

/// Serves [`Donor`].
pub(crate) struct DonorService(pub Arc<Node>);

/// The receipt of `donation` as it stands, signed by the node key.
fn receipt(store: &Store, donation: &Donation) -> pb::Receipt {
    let body = donor::receipt_body(donation).encode_to_vec();
    pb::Receipt {
        signature: store.sign(&body).to_bytes().to_vec(),
        body,
        node_key: hex::encode(store.node_key().to_bytes()),
    }
}

fn invalid(field: &str, message: &str) -> Status {
    Status::invalid_argument(format!("{field}: {message}"))
}

#[tonic::async_trait]
impl Donor for DonorService {
    async fn donate(
        &self,
        request: Request<pb::DonateRequest>,
    ) -> Result<Response<pb::DonateResponse>, Status> {
        self.0.limit_donor(&request)?;
        let pb::DonateRequest {
            dataset,
            format,
            records,
            purposes,
            eligibility,
            organisation,
        } = request.into_inner();
        if dataset.is_empty() {
            return Err(invalid("dataset", "empty"));
        }
        let extension = pb::RecordFormat::try_from(format)
            .ok()
            .and_then(credentials::record_extension)
            .ok_or_else(|| {
                invalid(
                    "format",
                    "name the records' format: CSV, Parquet or Arrow IPC",
                )
            })?;
        if records.is_empty() {
            return Err(invalid("records", "empty"));
        }
        let secret = hex::encode(rand::random::<[u8; 32]>());
        let secret_hash = sha256_hex(secret.as_bytes());
        let node = self.0.clone();
        let receipt = self
            .0
            .with_store(move |store| {
                store
                    .register_on_first_use(&dataset, |d| node.config.builtin_schema(d))
                    .map_err(store_status)?;
                let schema = store.schema(&dataset).map_err(store_status)?;
                let dir = tempfile::tempdir().map_err(internal)?;
                let path = dir.path().join(format!("records.{extension}"));
                std::fs::write(&path, &records).map_err(internal)?;
                // Name the request's field, not the node's temporary file.
                let named = |message: &str| message.replace(&path.display().to_string(), "records");
                let policy = node.config.donors.get(&dataset);
                let shape = credentials::shape(&schema);
                let rows = match (policy, &eligibility) {
                    (Some(_), Some(_)) => credentials::bound_rows(&schema, &path, &purposes)
                        .map_err(|e| Status::invalid_argument(named(&e.to_string())))?,
                    _ => Vec::new(),
                };
                let admission = donor::admit(
                    policy,
                    || {
                        node.donor_key(&shape.description())
                            .map(|k| k.verifying_key().clone())
                            .map_err(|s| DonorError::Refused(s.message().to_string()))
                    },
                    credentials::today(),
                    &node.node_key,
                    &donor::Submitted {
                        dataset: &dataset,
                        records: &records,
                        shape,
                        rows: &rows,
                        purposes: &purposes,
                        eligibility: eligibility.as_ref(),
                        organisation: organisation.as_ref(),
                    },
                )
                .map_err(|e| match e {
                    DonorError::Refused(_) => Status::permission_denied(e.to_string()),
                    _ => Status::invalid_argument(e.to_string()),
                })?;
                let (donation, _) = store
                    .donate(&dataset, &path, &purposes, &secret_hash, &admission)
                    .map_err(|e| {
                        let status = store_status(e);
                        Status::new(status.code(), named(status.message()))
                    })?;
                Ok(receipt(store, &donation))
            })
            .await?;
        Ok(Response::new(pb::DonateResponse {
            receipt: Some(receipt),
            withdrawal_secret: secret,
        }))
    }

    async fn get_receipt(
        &self,
        request: Request<pb::GetReceiptRequest>,
    ) -> Result<Response<pb::Receipt>, Status> {
        self.0.limit_donor(&request)?;
        let id = request.into_inner().id;
        let receipt = self
            .0
            .with_store(move |store| {
                let donation = store.donation(&id).map_err(store_status)?;
                Ok(receipt(store, &donation))
            })
            .await?;
        Ok(Response::new(receipt))
    }

    async fn withdraw(
        &self,
        request: Request<pb::WithdrawRequest>,
    ) -> Result<Response<pb::Receipt>, Status> {
        self.0.limit_donor(&request)?;
        let pb::WithdrawRequest {
            id,
            withdrawal_secret,
            nullifier_proof,
        } = request.into_inner();
        let node = self.0.clone();
        let receipt = self
            .0
            .with_store(move |store| {
                let by = if nullifier_proof.is_empty() {
                    Withdrawal::Secret(sha256_hex(withdrawal_secret.trim().as_bytes()))
                } else {
                    let donation = store.donation(&id).map_err(store_status)?;
                    let nullifier = donation.nullifier.clone().ok_or_else(|| {
                        Status::failed_precondition(
                            "this donation proved no eligibility: withdraw it with its secret",
                        )
                    })?;
                    let key = node.donor_key(credentials::WITHDRAWAL_SHAPE)?;
                    donor::check_withdrawal(
                        key.verifying_key(),
                        &store.node_key(),
                        &donation.dataset,
                        &id,
                        &nullifier,
                        &nullifier_proof,
                    )
                    .map_err(|e| Status::permission_denied(e.to_string()))?;
                    Withdrawal::Nullifier(nullifier)
                };
                let donation = store.withdraw(&id, &by).map_err(store_status)?;
                Ok(receipt(store, &donation))
            })
            .await?;
        Ok(Response::new(receipt))
    }
}
