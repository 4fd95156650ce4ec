//! The Catalog service: datasets, epochs, signed manifests, verifying keys, the node key.
//! Public: no token needed.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use zkfabric_proto::v1::{self as pb, catalog_server::Catalog};

use super::{internal, store_status, Node};
use crate::{node::donor, node::store::DatasetSummary, shared::credentials, verifier::bundle};

/// Serves [`Catalog`].
pub(crate) struct CatalogService(pub Arc<Node>);

/// The protobuf form of a dataset summary.
pub fn summary_to_proto(d: &DatasetSummary) -> pb::DatasetSummary {
    pb::DatasetSummary {
        name: d.name.clone(),
        latest_epoch: d.latest_epoch,
        chunks: d.chunks,
        rows: d.rows,
        pending: d.pending,
    }
}

#[tonic::async_trait]
impl Catalog for CatalogService {
    async fn list_datasets(
        &self,
        _: Request<pb::ListDatasetsRequest>,
    ) -> Result<Response<pb::ListDatasetsResponse>, Status> {
        let datasets = self
            .0
            .with_store(|store| store.datasets().map_err(store_status))
            .await?;
        Ok(Response::new(pb::ListDatasetsResponse {
            datasets: datasets.iter().map(summary_to_proto).collect(),
        }))
    }

    async fn describe_dataset(
        &self,
        request: Request<pb::DescribeDatasetRequest>,
    ) -> Result<Response<pb::DatasetDescription>, Status> {
        let dataset = request.into_inner().dataset;
        let node = self.0.clone();
        let description = self
            .0
            .with_store(move |store| {
                let schema = store.schema(&dataset).map_err(store_status)?;
                let summary = store
                    .datasets()
                    .map_err(store_status)?
                    .into_iter()
                    .find(|d| d.name == dataset)
                    .ok_or_else(|| Status::not_found(format!("unknown dataset `{dataset}`")))?;
                let mut epochs = Vec::new();
                for epoch in store.epochs(&dataset).map_err(store_status)? {
                    let m = store
                        .manifest(&dataset, Some(epoch))
                        .map_err(store_status)?
                        .manifest;
                    epochs.push(pb::EpochSummary {
                        epoch,
                        chunks: m.chunks.len() as u64,
                        rows: m.chunks.iter().map(|c| c.rows).sum(),
                        manifest_hash: m.hash(),
                        erased: store
                            .check_queryable(&dataset, epoch)
                            .err()
                            .map(|e| e.to_string()),
                    });
                }
                let donor_policy = node.config.donors.get(&dataset).map(|p| {
                    let shape = credentials::shape(&schema);
                    donor::policy_to_proto(p, &shape, credentials::today())
                });
                Ok(pb::DatasetDescription {
                    donor_policy,
                    summary: Some(summary_to_proto(&summary)),
                    schema_hash: schema.hash(),
                    chunk_rows: schema.chunk_rows as u64,
                    purposes: schema.columns[schema.consent()].purposes.clone(),
                    schema: schema.source,
                    epochs,
                })
            })
            .await?;
        Ok(Response::new(description))
    }

    async fn get_manifest(
        &self,
        request: Request<pb::GetManifestRequest>,
    ) -> Result<Response<pb::SignedManifest>, Status> {
        let pb::GetManifestRequest { dataset, epoch } = request.into_inner();
        let manifest = self
            .0
            .with_store(move |store| store.manifest(&dataset, epoch).map_err(store_status))
            .await?;
        Ok(Response::new(
            bundle::manifest_to_proto(&manifest).map_err(internal)?,
        ))
    }

    async fn get_verifying_keys(
        &self,
        request: Request<pb::GetVerifyingKeysRequest>,
    ) -> Result<Response<pb::GetVerifyingKeysResponse>, Status> {
        let wanted = request.into_inner();
        let all = wanted.fingerprints.is_empty() && wanted.shapes.is_empty();
        let keys = self
            .0
            .keys
            .infos()
            .map_err(internal)?
            .into_iter()
            .filter(|k| {
                all || wanted.fingerprints.contains(&k.fingerprint)
                    || wanted.shapes.contains(&k.shape)
            })
            .map(|k| {
                Ok(pb::VerifyingKey {
                    key: hex::decode(&k.verifying_key).map_err(internal)?,
                    fingerprint: k.fingerprint,
                    shape: k.shape,
                })
            })
            .collect::<Result<_, Status>>()?;
        Ok(Response::new(pb::GetVerifyingKeysResponse { keys }))
    }

    async fn get_proving_key(
        &self,
        request: Request<pb::GetProvingKeyRequest>,
    ) -> Result<Response<pb::ProvingKey>, Status> {
        let shape = request.into_inner().shape;
        let node = self.0.clone();
        let wanted = shape.clone();
        let key = tokio::task::spawn_blocking(move || node.donor_key(&wanted))
            .await
            .map_err(internal)??;
        Ok(Response::new(pb::ProvingKey {
            fingerprint: zkfabric_circuits::snark::fingerprint(key.verifying_key()),
            key: key.to_bytes(),
            shape,
        }))
    }

    async fn get_ledger(
        &self,
        request: Request<pb::GetLedgerRequest>,
    ) -> Result<Response<pb::Ledger>, Status> {
        let dataset = request.into_inner().dataset;
        let budget = self.0.config.privacy.budget();
        let ledger = self
            .0
            .with_store(move |store| {
                store
                    .ledger(&dataset)
                    .map(|l| l.to_proto(&dataset, budget))
                    .map_err(store_status)
            })
            .await?;
        Ok(Response::new(ledger))
    }

    async fn get_node_key(
        &self,
        _: Request<pb::GetNodeKeyRequest>,
    ) -> Result<Response<pb::NodeKey>, Status> {
        Ok(Response::new(pb::NodeKey {
            key: hex::encode(self.0.node_key.to_bytes()),
        }))
    }
}
