//! Transfers: uploads and downloads run as background tasks; the caller holds a
//! [`Transfer`] with a request ID, a progress stream and a cancel handle, and awaits it
//! for the result — the model of Agora's SDK.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use futures::Stream;
use tokio::{sync::watch, task::JoinHandle};
use tokio_stream::wrappers::WatchStream;

use crate::{error::Error, request_id::RequestId};

/// How far a transfer has come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes moved so far.
    pub done: u64,
    /// Bytes in all.
    pub total: u64,
}

/// A running upload or download. Await it for the result; dropping it does not cancel
/// it (call [`Transfer::cancel`]).
pub struct Transfer<T> {
    /// The request ID.
    id: RequestId,
    /// The latest progress.
    progress: watch::Receiver<Progress>,
    /// Set to true to cancel.
    cancel: watch::Sender<bool>,
    /// The task doing the transfer.
    task: JoinHandle<Result<T, Error>>,
}

impl<T> Transfer<T> {
    /// The request ID, valid while the transfer runs.
    pub fn request_id(&self) -> RequestId {
        self.id
    }

    /// The progress so far.
    pub fn progress_now(&self) -> Progress {
        *self.progress.borrow()
    }

    /// A stream of progress updates; it ends when the transfer does.
    pub fn progress(&self) -> impl Stream<Item = Progress> + Send + 'static + use<T> {
        WatchStream::new(self.progress.clone())
    }

    /// Cancels the transfer: the call is dropped, the server removes any partial data,
    /// and awaiting the transfer gives [`Error::Cancelled`].
    pub fn cancel(&self) {
        let _ = self.cancel.send(true);
    }
}

impl<T> Future for Transfer<T> {
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.task)
            .poll(cx)
            .map(|joined| match joined {
                Ok(result) => result,
                Err(e) if e.is_cancelled() => Err(Error::Cancelled),
                Err(e) => Err(Error::Io(std::io::Error::other(format!(
                    "the transfer task failed: {e}"
                )))),
            })
    }
}

/// What a transfer's task gets: its progress to report and its cancellation to obey.
pub(crate) struct TransferContext {
    /// Where the task reports progress.
    progress: watch::Sender<Progress>,
}

impl TransferContext {
    /// Reports `done` of `total` bytes.
    pub(crate) fn report(&self, done: u64, total: u64) {
        self.progress.send_replace(Progress { done, total });
    }
}

/// The client's running transfers, and the limit on how many may run.
pub(crate) struct TransferTable {
    /// Cancel handles of running transfers. A std mutex: held for one map operation.
    running: Arc<Mutex<HashMap<RequestId, watch::Sender<bool>>>>,
    /// The next request ID.
    next_id: AtomicU64,
    /// The most transfers at once.
    max: usize,
}

/// Removes a transfer from the table when its task ends, however it ends.
struct Finished {
    /// The table to leave.
    running: Arc<Mutex<HashMap<RequestId, watch::Sender<bool>>>>,
    /// The finished transfer.
    id: RequestId,
}

impl Drop for Finished {
    fn drop(&mut self) {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl TransferTable {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            running: Arc::default(),
            next_id: AtomicU64::new(1),
            max,
        }
    }

    /// Starts `work` as a transfer of `total` bytes, or refuses with
    /// [`Error::TooManyTransfers`] when the client already runs the most it may.
    /// `on_cancel` runs after the work is stopped by a cancel (to remove local files).
    pub(crate) fn start<T, W, Fut, C, CFut>(
        &self,
        total: u64,
        work: W,
        on_cancel: C,
    ) -> Result<Transfer<T>, Error>
    where
        T: Send + 'static,
        W: FnOnce(TransferContext) -> Fut,
        Fut: Future<Output = Result<T, Error>> + Send + 'static,
        C: FnOnce() -> CFut + Send + 'static,
        CFut: Future<Output = ()> + Send + 'static,
    {
        let (cancel, mut cancelled) = watch::channel(false);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if running.len() >= self.max {
                return Err(Error::TooManyTransfers(format!(
                    "too many transfers in flight: at most {} uploads and downloads per client at once",
                    self.max
                )));
            }
            running.insert(id, cancel.clone());
        }
        let finished = Finished {
            running: self.running.clone(),
            id,
        };
        let (progress_tx, progress) = watch::channel(Progress { done: 0, total });
        let work = work(TransferContext {
            progress: progress_tx,
        });
        let task = tokio::spawn(async move {
            let _finished = finished;
            let stopped = async move {
                let _ = cancelled.wait_for(|c| *c).await;
            };
            tokio::select! {
                result = work => result,
                () = stopped => {
                    on_cancel().await;
                    Err(Error::Cancelled)
                }
            }
        });
        Ok(Transfer {
            id,
            progress,
            cancel,
            task,
        })
    }

    pub(crate) fn cancel(&self, id: RequestId) -> Result<(), Error> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        match running.get(&id) {
            Some(cancel) => {
                let _ = cancel.send(true);
                Ok(())
            }
            None => Err(Error::NoSuchTransfer(id)),
        }
    }
}
