//! zkfabric's protobuf messages, generated from `proto/zkfabric/v1/*.proto`.
//!
//! [`v1::Bundle`] is the answer bundle a node returns for a verified query and an
//! offline verifier checks. Every message also (de)serializes as protobuf's canonical
//! JSON through serde.

/// Version 1 of the zkfabric protocol.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/zkfabric.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/zkfabric.v1.serde.rs"));
}
