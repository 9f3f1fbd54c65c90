//! Generates the gRPC code with a vendored protoc (no system protoc needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/rustnet.proto"],
        &["proto"],
    )?;
    println!("cargo:rerun-if-changed=proto/rustnet.proto");
    Ok(())
}
