//! Compiles `zkfabric/v1/*.proto`: messages with prost, gRPC clients and servers with
//! tonic (with the `grpc` feature), serde impls in protobuf's canonical JSON mapping with pbjson, and the file
//! descriptor set that server reflection serves. protoc comes from the
//! protoc-bin-vendored crate: nothing to install.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "zkfabric/v1/bundle.proto",
        "zkfabric/v1/catalog.proto",
        "zkfabric/v1/query.proto",
        "zkfabric/v1/donor.proto",
        "zkfabric/v1/admin.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let descriptors = out.join("descriptors.bin");
    let mut config = prost_build::Config::new();
    config
        .protoc_executable(protoc_bin_vendored::protoc_bin_path()?)
        .file_descriptor_set_path(&descriptors);
    let grpc = env::var_os("CARGO_FEATURE_GRPC").is_some();
    tonic_prost_build::configure()
        .build_client(grpc)
        .build_server(grpc)
        .compile_with_config(config, &protos, &["."])?;
    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptors)?)?
        .build(&[".zkfabric"])?;
    Ok(())
}
