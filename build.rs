//! Compiles the public API in `proto/` (and the benchmark's private proto) with
//! tonic-prost-build, using the protoc shipped by `protoc-bin-vendored`, and writes a
//! file descriptor set that the server registers for reflection.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment now.
    unsafe { env::set_var("PROTOC", protoc) };

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("courier_descriptor.bin"))
        .bytes(".")
        // Decode errors and oversized messages are the caller's fault (service/codec.rs).
        .codec_path("crate::codec::StrictCodec")
        .generate_default_stubs(true)
        .compile_protos(
            &[
                "proto/courier/v1/error_reason.proto",
                "proto/courier/v1/media_service.proto",
                "proto/courier/v1/messaging_service.proto",
            ],
            &["proto"],
        )?;
    tonic_prost_build::configure()
        .bytes(".")
        .compile_protos(&["bench/proto/bench.proto"], &["bench/proto"])?;
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=bench/proto");
    Ok(())
}
