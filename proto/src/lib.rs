//! zkfabric's protobuf messages and gRPC services, generated from
//! `proto/zkfabric/v1/*.proto`.
//!
//! [`v1::Bundle`] is the answer bundle a node returns for a verified query and an
//! offline verifier checks. The services (`v1::catalog_server`, `v1::query_server`,
//! `v1::donor_server`, `v1::admin_server` and their clients, with the `grpc` feature) are
//! what `zkfabric serve` runs; the messages alone need no network stack. Every message
//! also (de)serializes as protobuf's canonical JSON through serde.

/// Version 1 of the zkfabric protocol.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/zkfabric.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/zkfabric.v1.serde.rs"));
}

/// The encoded file descriptor set of every `.proto`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));
