//! The Admin service: sealing and development key setup. Needs an admin token.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use zkfabric_proto::v1::{self as pb, admin_server::Admin};

use super::{prove_status, store_status, Node};
use crate::{node::config::Role, node::prove};

/// Serves [`Admin`].
pub(crate) struct AdminService(pub Arc<Node>);

#[tonic::async_trait]
impl Admin for AdminService {
    async fn seal(
        &self,
        request: Request<pb::SealRequest>,
    ) -> Result<Response<pb::SealResponse>, Status> {
        let caller = self.0.tokens.require(&request, Role::Admin)?;
        let pb::SealRequest {
            dataset,
            prove_rollups,
        } = request.into_inner();
        let prove_rollups = prove_rollups || self.0.config.rollups.prove_at_seal;
        let fan_in = self.0.config.query.combine_inputs;
        // Seal, list the sealings left unproven and (when asked) load them, all with the
        // store; then prove them without it, in a proving worker's turn.
        let node = self.0.clone();
        let (sealed, unproven, loaded) = self
            .0
            .with_store_waiting(move |store| {
                let sealed = store.seal(&dataset).map_err(store_status)?;
                let kept = prove::KeptSealings {
                    keys: &node.keys,
                    proofs: &node.proofs,
                    fan_in,
                };
                let Some((manifest, unproven)) = kept
                    .unproven_latest(store, &dataset)
                    .map_err(prove_status)?
                else {
                    return Ok((sealed, 0, Vec::new()));
                };
                let loaded = match prove_rollups {
                    false => Vec::new(),
                    true => unproven
                        .iter()
                        .map(|(rollup, position)| {
                            prove::LoadedSealing::load(store, &manifest, rollup, *position)
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(prove_status)?,
                };
                Ok((sealed, unproven.len(), loaded))
            })
            .await?;
        tracing::info!(caller, ?sealed, unproven, "sealed on request");
        let proven = match loaded.is_empty() {
            true => 0,
            false => self.0.prove_sealings(loaded).await?,
        };
        let (sealed, epoch, chunks, rows) = match sealed {
            Some(s) => (true, s.epoch, s.chunks, s.rows),
            None => (false, 0, 0, 0),
        };
        Ok(Response::new(pb::SealResponse {
            sealed,
            epoch,
            chunks,
            rows,
            sealings_proven: proven as u32,
            sealings_unproven: (unproven - proven) as u32,
        }))
    }

    async fn setup(
        &self,
        request: Request<pb::QuerySetupRequest>,
    ) -> Result<Response<pb::QuerySetupResponse>, Status> {
        let caller = self.0.tokens.require(&request, Role::Admin)?;
        let pb::QuerySetupRequest {
            sql,
            purpose,
            epsilon,
            delta,
        } = request.into_inner();
        let query = pb::QueryRequest {
            sql,
            purpose,
            epsilon,
            delta,
            ..Default::default()
        };
        let request = self.0.prove_request(query, true)?;
        // Plan with the store, make the keys without it.
        let node = self.0.clone();
        let plan = self
            .0
            .with_store_waiting(move |store| {
                let ctx = datafusion::prelude::SessionContext::new();
                tokio::runtime::Handle::current()
                    .block_on(prove::plan(&ctx, store, &node.keys, &node.proofs, &request))
                    .map(|(plan, _)| plan)
                    .map_err(prove_status)
            })
            .await?;
        let node = self.0.clone();
        let keys = tokio::task::spawn_blocking(move || {
            prove::setup_keys(&node.keys, &plan).map_err(prove_status)
        })
        .await
        .map_err(|e| Status::internal(format!("setup task failed: {e}")))??;
        tracing::info!(
            caller,
            keys = keys.len(),
            "made development keys on request"
        );
        Ok(Response::new(pb::QuerySetupResponse { keys }))
    }
}
