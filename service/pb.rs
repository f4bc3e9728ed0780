//! Code generated from `proto/` by `build.rs`; never edited by hand.

#[allow(missing_docs, clippy::all)]
pub mod courier {
    pub mod v1 {
        tonic::include_proto!("courier.v1");
    }
}

pub use courier::v1::*;

/// The encoded file descriptor set of `courier.v1`, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("courier_descriptor");
