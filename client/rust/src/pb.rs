//! The gRPC types and clients generated from courier's `proto/` by `build.rs`.
#![allow(missing_docs, clippy::all)]

tonic::include_proto!("courier.v1");
