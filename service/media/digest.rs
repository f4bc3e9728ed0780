//! SHA-256 of an upload, computed on a blocking thread beside the receive loop so that
//! hashing overlaps with the network instead of adding to it.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::{sync::mpsc, task::JoinHandle};

use crate::error::Error;

/// How many chunks may wait for the hasher; bounds the memory it can hold.
const QUEUE: usize = 8;

/// A running SHA-256 computation fed with chunks in order.
pub struct Digester {
    /// Chunks to hash, in order; dropping it tells the thread to finish.
    tx: mpsc::Sender<Bytes>,
    /// The thread that hashes, and returns the digest.
    thread: JoinHandle<[u8; 32]>,
}

impl Digester {
    /// Starts a hashing thread.
    pub fn spawn() -> Self {
        let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
        let thread = tokio::task::spawn_blocking(move || {
            let mut hasher = Sha256::new();
            while let Some(chunk) = rx.blocking_recv() {
                hasher.update(&chunk);
            }
            hasher.finalize().into()
        });
        Self { tx, thread }
    }

    /// Queues the next chunk (a cheap clone of shared bytes), waiting if the hasher
    /// is behind.
    pub async fn update(&mut self, chunk: Bytes) -> Result<(), Error> {
        self.tx
            .send(chunk)
            .await
            .map_err(|_| Error::Internal("the hashing thread stopped".into()))
    }

    /// Waits for the digest of every chunk queued.
    pub async fn finish(self) -> Result<[u8; 32], Error> {
        drop(self.tx);
        self.thread
            .await
            .map_err(|e| Error::Internal(format!("the hashing thread failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn matches_a_one_shot_digest() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut digester = Digester::spawn();
        for chunk in data.chunks(7_000) {
            assert!(digester.update(Bytes::copy_from_slice(chunk)).await.is_ok());
        }
        let expected: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(digester.finish().await.ok(), Some(expected));
    }
}
