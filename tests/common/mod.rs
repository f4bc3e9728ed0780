//! The black-box test harness lives in the `courier-testkit` crate, shared with the
//! client library's tests.
#![allow(unused_imports)]

pub use courier_testkit::*;

/// Runs each case (an `async fn(Backend)` of the test file) on the local backend and on
/// S3, as test modules `local` and `s3`; the S3 ones are skipped without a server.
#[allow(unused_macros)]
macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Backend::Local).await
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(backend) = super::Backend::s3() {
                        super::$case(backend).await
                    }
                }
            )*
        }
    };
}
