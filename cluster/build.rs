//! Compiles the cluster protos with the vendored `protoc`, so a fresh machine needs none.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(
        config,
        &[
            "proto/protonn/cluster/v1/cluster.proto",
            "proto/protonn/cluster/v1/guilds.proto",
        ],
        &["proto"],
    )?;
    Ok(())
}
