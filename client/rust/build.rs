//! Generates the client stubs of courier.v1 from the repository's `proto/`, with the
//! protoc shipped by `protoc-bin-vendored`.

use std::env;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment now.
    unsafe { env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure()
        .build_server(false)
        .bytes(".")
        .compile_protos(
            &[
                "../../proto/courier/v1/error_reason.proto",
                "../../proto/courier/v1/media_service.proto",
                "../../proto/courier/v1/messaging_service.proto",
            ],
            &["../../proto"],
        )?;
    println!("cargo:rerun-if-changed=../../proto");
    Ok(())
}
