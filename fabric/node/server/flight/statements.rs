//! Statements being proven for Flight SQL clients. A proof takes minutes; a client whose
//! deadline passes, or that asks the same question again meanwhile, waits for the proof
//! already running instead of starting another. The proof runs to its end whoever waits
//! (a later ask gets its bundle), and is forgotten once done: asking again afterwards
//! proves again, reusing the chunk proofs the node's cache kept.

use std::{collections::HashMap, sync::Arc};

use prost::Message;
use tokio::sync::{mpsc, watch, Mutex};
use tonic::Status;
use zkfabric_proto::v1::{self as pb, run_event::Event};

use super::super::Node;

/// A statement's outcome: the bundle id, or why it was not answered.
type Outcome = Option<Result<String, Status>>;

/// The statements now proving, by what was asked (the encoded request: SQL, purpose,
/// epoch, cost and nonce).
#[derive(Clone, Default)]
pub(super) struct Statements(Arc<Mutex<HashMap<Vec<u8>, watch::Receiver<Outcome>>>>);

impl Statements {
    /// The id of the bundle answering `asked`: proven now, or by the proof of the same
    /// question already running.
    pub(super) async fn answer(
        &self,
        node: &Arc<Node>,
        asked: pb::QueryRequest,
        caller: &str,
    ) -> Result<String, Status> {
        let key = asked.encode_to_vec();
        let mut outcome = {
            let mut running = self.0.lock().await;
            match running.get(&key) {
                Some(outcome) => {
                    tracing::info!(caller, "joining the proof of the same statement");
                    outcome.clone()
                }
                None => {
                    let setup = node.config.server.setup_missing_keys;
                    let request = node.prove_request(asked, setup)?;
                    let events = node.enqueue(request, caller).await?;
                    let (done, outcome) = watch::channel(None);
                    running.insert(key.clone(), outcome.clone());
                    tokio::spawn(self.clone().follow(key, events, done));
                    outcome
                }
            }
        };
        let finished = outcome
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Status::internal("the proving task ended without an answer"))?;
        finished.clone().expect("waited for an outcome")
    }

    /// Reads a proof's events to its end, then publishes its outcome and forgets it.
    async fn follow(
        self,
        key: Vec<u8>,
        mut events: mpsc::UnboundedReceiver<Result<pb::RunEvent, Status>>,
        done: watch::Sender<Outcome>,
    ) {
        let mut outcome = Err(Status::internal("the proving task ended without an answer"));
        while let Some(event) = events.recv().await {
            match event {
                Ok(pb::RunEvent {
                    event: Some(Event::Finished(finished)),
                }) => {
                    outcome = Ok(finished.bundle_id);
                    break;
                }
                Ok(_) => {}
                Err(status) => {
                    outcome = Err(status);
                    break;
                }
            }
        }
        let mut running = self.0.lock().await;
        running.remove(&key);
        let _ = done.send(Some(outcome));
    }
}
