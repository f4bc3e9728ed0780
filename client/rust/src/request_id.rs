//! The ID of a running transfer: its own module so that `error` (which names it in
//! [`Error::NoSuchTransfer`](crate::Error::NoSuchTransfer)) and `transfer` (which hands
//! it out and returns `Error`) both import it without importing each other.

/// Identifies a transfer of this client while it runs.
pub type RequestId = u64;
