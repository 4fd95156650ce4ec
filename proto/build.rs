//! Compiles `zkfabric/v1/*.proto` with prost, and serde impls in protobuf's canonical JSON
//! mapping with pbjson. protoc comes from the protoc-bin-vendored crate: nothing to install.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["zkfabric/v1/bundle.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let descriptors = out.join("descriptors.bin");
    let mut config = prost_build::Config::new();
    config
        .protoc_executable(protoc_bin_vendored::protoc_bin_path()?)
        .file_descriptor_set_path(&descriptors)
        .compile_protos(&protos, &["."])?;
    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptors)?)?
        .build(&[".zkfabric"])?;
    Ok(())
}
