//! Code generated from `proto/` by `build.rs`; never edited by hand.

#[allow(missing_docs, clippy::all)]
pub mod courier {
    pub mod v1 {
        tonic::include_proto!("courier.v1");
    }
    pub mod admin {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/admin/courier.admin.v1.rs"));
        }
    }
}

pub use courier::v1::*;

/// The encoded file descriptor set of `courier.v1`, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("courier_descriptor");

/// The operator's `courier.admin.v1` (the admin listener's only).
pub use courier::admin::v1 as admin;

/// The encoded file descriptor set of `courier.admin.v1`, served by the admin
/// listener's reflection.
pub const ADMIN_FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("courier_admin_descriptor");
