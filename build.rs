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
    // The operator's AdminService, apart: its own folder (prost would write an empty
    // `courier.v1.rs` for the imported package over the one above) and descriptor
    // set, served by the reflection of the admin listener only.
    let admin_dir = out_dir.join("admin");
    std::fs::create_dir_all(&admin_dir)?;
    tonic_prost_build::configure()
        .out_dir(&admin_dir)
        .file_descriptor_set_path(out_dir.join("courier_admin_descriptor.bin"))
        .bytes(".")
        .codec_path("crate::codec::StrictCodec")
        .extern_path(".courier.v1", "crate::pb::courier::v1")
        .compile_protos(&["proto/courier/admin/v1/admin_service.proto"], &["proto"])?;
    tonic_prost_build::configure()
        .bytes(".")
        .compile_protos(&["bench/proto/bench.proto"], &["bench/proto"])?;
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=bench/proto");
    Ok(())
}
