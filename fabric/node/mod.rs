//! The node, stage by stage in the order data flows through it:
//! - [`donor`]: a dataset's donor policy and the node's admission of a donation against
//!   it (eligibility or organisation proofs, withdrawals, receipts);
//! - [`store`]: the data directory: ingest into pending rows, sealing into committed
//!   chunks and signed manifests (rolling them up into committed cells), the SQLite
//!   catalog and the node key;
//! - [`tables`]: an epoch's chunks as a DataFusion table;
//! - [`sql`]: SQL planned by DataFusion and lowered to a provable query;
//! - [`keys`]: proving keys per circuit shape (development setup or imported ceremony);
//! - [`proofs`]: chunk proofs kept for reuse across queries and restarts;
//! - [`prove`]: answering a query with proofs (from rows, or from a roll-up's cells),
//!   as an answer bundle, and proving roll-up sealings;
//! - [`server`]: the gRPC node (`zkfabric serve`);
//! - [`config`]: the node configuration file, which sets each stage's parameters.

pub mod config;
pub mod donor;
pub mod keys;
pub mod proofs;
pub mod prove;
pub mod server;
pub mod sql;
pub mod store;
pub mod tables;
