//! Generates the client stubs of courier.v1 from the repository's `proto/`, with the
//! protoc shipped by `protoc-bin-vendored`.

use std::env;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment now.
    unsafe { env::set_var("PROTOC", protoc) };
    // In the repository the protos are `../../proto`; a packaged crate (cargo package
    // ships only this folder) carries a copy in `proto/` (README "Publishing").
    let packaged = PathBuf::from("proto");
    let root = if packaged.join("courier/v1").is_dir() {
        packaged
    } else {
        PathBuf::from("../../proto")
    };
    let files = ["error_reason", "media_service", "messaging_service"]
        .map(|name| root.join(format!("courier/v1/{name}.proto")));
    tonic_prost_build::configure()
        .build_server(false)
        .bytes(".")
        .compile_protos(&files, std::slice::from_ref(&root))?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
