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
        let dataset = request.into_inner().dataset;
        let sealed = self
            .0
            .with_store_waiting(move |store| store.seal(&dataset).map_err(store_status))
            .await?;
        tracing::info!(caller, ?sealed, "sealed on request");
        Ok(Response::new(match sealed {
            Some(s) => pb::SealResponse {
                sealed: true,
                epoch: s.epoch,
                chunks: s.chunks,
                rows: s.rows,
            },
            None => pb::SealResponse::default(),
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
