//! The black-box test harness lives in the `courier-testkit` crate, shared with the
//! client library's tests.
#![allow(unused_imports)]

pub use courier_testkit::*;
