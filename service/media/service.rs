//! The gRPC face of MediaService: handlers unpack requests and call the plain
//! functions of this module, and convert errors once at the end.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::{
    Download, Frame, MediaStore, SlotGuard, Thumbnailer, TransferSlots, open_download,
    resumable::{self, parse_upload_id},
    resumable_slots::HeldUploads,
    thumbnail, upload,
};
use crate::{
    auth::{self, IssuedAt},
    error::{Error, Reason},
    http::{
        LinkKey, LinkSettings,
        mint::{Minter, mint},
    },
    ids::MediaId,
    metrics::METRICS,
    pb::{self, download_media_response, media_service_server, upload_media_request},
    revocation::Revocations,
};

/// How many frames a download may queue ahead of a slow reader.
const DOWNLOAD_QUEUE: usize = 4;

/// The MediaService implementation.
#[derive(Debug, Clone)]
pub struct MediaServer {
    /// The media library.
    media: MediaStore,
    /// Per-user transfer slots, shared by uploads and downloads.
    slots: TransferSlots,
    /// Turns true when the shutdown grace period is over: open uploads then stop,
    /// remove their partial data and fail with UNAVAILABLE.
    abort: watch::Receiver<bool>,
    /// Every upload and download task, so that shutdown waits for exactly the
    /// transfers in flight.
    tasks: TaskTracker,
    /// Limits how many thumbnails are decoded at once.
    thumbnailer: Thumbnailer,
    /// The transfer slots held by open resumable uploads.
    held: HeldUploads,
    /// Revoked tokens: an upload or download running on one ends with UNAUTHENTICATED.
    revocations: Revocations,
    /// Signs GetMediaUrl's links, with their lifetime rules; `None`: not served.
    links: Option<Arc<(LinkKey, LinkSettings)>>,
}

impl MediaServer {
    /// A service over `media`, with `slots` limiting each user's transfers, whose open
    /// uploads are aborted when `abort` turns true, and whose transfer tasks `tasks`
    /// tracks.
    pub fn new(
        media: MediaStore,
        slots: TransferSlots,
        abort: watch::Receiver<bool>,
        tasks: TaskTracker,
    ) -> Self {
        Self {
            held: HeldUploads::new(slots.clone(), media.clone()),
            media,
            slots,
            abort,
            tasks,
            thumbnailer: Thumbnailer::new(DEFAULT_THUMBNAIL_CONCURRENCY),
            revocations: Revocations::default(),
            links: None,
        }
    }

    /// The same service, minting links signed with `key` under `settings`.
    pub fn with_links(mut self, key: LinkKey, settings: LinkSettings) -> Self {
        self.links = Some(Arc::new((key, settings)));
        self
    }

    /// The same service, ending the uploads and downloads of tokens in `revocations`
    /// once they are revoked.
    pub fn with_revocations(mut self, revocations: Revocations) -> Self {
        self.revocations = revocations;
        self
    }

    /// Completes once the token `request` came with is revoked.
    fn revoked<T>(
        &self,
        request: &Request<T>,
        user: &str,
    ) -> impl Future<Output = ()> + Send + 'static {
        let issued = request
            .extensions()
            .get::<IssuedAt>()
            .copied()
            .unwrap_or(IssuedAt(None));
        let revocations = self.revocations.clone();
        let user = user.to_owned();
        async move { revocations.wait_revoked(&user, issued.0).await }
    }

    /// The same service, decoding thumbnails with `thumbnailer`.
    pub fn with_thumbnailer(mut self, thumbnailer: Thumbnailer) -> Self {
        self.thumbnailer = thumbnailer;
        self
    }
}

/// How many thumbnails are decoded at once unless configured.
pub const DEFAULT_THUMBNAIL_CONCURRENCY: usize = 2;

type DownloadStream = Pin<Box<dyn Stream<Item = Result<pb::DownloadMediaResponse, Status>> + Send>>;

#[tonic::async_trait]
impl media_service_server::MediaService for MediaServer {
    async fn upload_media(
        &self,
        request: Request<Streaming<pb::UploadMediaRequest>>,
    ) -> Result<Response<pb::UploadMediaResponse>, Status> {
        let user = auth::caller(&request)?;
        let revoked = self.revoked(&request, &user.0);
        let slot = self.slots.acquire(&user.0).await?;
        let media = self.media.clone();
        let frames = request
            .into_inner()
            .map(|frame| frame.map_err(Error::from).and_then(to_frame));
        let frames = until_aborted(frames, self.abort.clone());
        // A revoked token's upload stops, and is cleaned up like any failed upload.
        let frames = ended_by(frames, revoked, || Error::Unauthenticated(REVOKED.into()));
        // The upload runs in its own task so that, if the call is dropped, it still
        // sees the broken stream, aborts the partial data and frees the slot.
        let task = self.tasks.spawn(
            async move {
                let _slot: SlotGuard = slot;
                let result = upload(&media, &user.0, frames).await;
                let counter = match &result {
                    Ok(_) => &METRICS.uploads_completed,
                    Err(Error::OfferMissed(_)) => &METRICS.upload_offers_missed,
                    Err(_) => &METRICS.uploads_failed,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                result
            }
            .instrument(tracing::Span::current()),
        );
        let record = task
            .await
            .map_err(|e| Error::Internal(format!("the upload task failed: {e}")))??;
        tracing::info!(media_id = %record.media_id, size = record.size, owner = %record.owner, "stored media");
        Ok(Response::new(pb::UploadMediaResponse {
            media: Some(record.to_proto()),
        }))
    }

    async fn download_media(
        &self,
        request: Request<pb::DownloadMediaRequest>,
    ) -> Result<Response<DownloadStream>, Status> {
        let user = auth::caller(&request)?;
        let revoked = self.revoked(&request, &user.0);
        let request = request.into_inner();
        let id = MediaId::parse(&request.media_id)?;
        let slot = self.slots.acquire(&user.0).await?;
        let download = open_download(&self.media, &id, request.offset, request.length).await?;
        let promised = download.len;
        let (tx, rx) = mpsc::channel(DOWNLOAD_QUEUE);
        let (ended_tx, ended_rx) = oneshot::channel();
        self.tasks.spawn(
            send_download(
                download,
                tx,
                slot,
                self.media.limits().idle_timeout,
                ended_tx,
            )
            .instrument(tracing::Span::current()),
        );
        let frames = complete_or_fail(ReceiverStream::new(rx), promised, ended_rx);
        // A revoked token's download ends; its task sees the stream gone and stops.
        Ok(Response::new(
            ended_by(frames, revoked, || {
                Status::from(Error::Unauthenticated(REVOKED.into()))
            })
            .boxed(),
        ))
    }

    async fn get_media(
        &self,
        request: Request<pb::GetMediaRequest>,
    ) -> Result<Response<pb::GetMediaResponse>, Status> {
        let id = MediaId::parse(&request.get_ref().media_id)?;
        let record = self.media.get(&id).await?;
        Ok(Response::new(pb::GetMediaResponse {
            media: Some(record.to_proto()),
        }))
    }

    async fn get_thumbnail(
        &self,
        request: Request<pb::GetThumbnailRequest>,
    ) -> Result<Response<pb::GetThumbnailResponse>, Status> {
        let request = request.into_inner();
        let id = MediaId::parse(&request.media_id)?;
        let made = thumbnail(&self.media, &self.thumbnailer, &id, request.max_edge).await?;
        Ok(Response::new(pb::GetThumbnailResponse {
            content_type: made.content_type.to_owned(),
            width: made.width,
            height: made.height,
            data: made.data,
        }))
    }

    async fn create_upload(
        &self,
        request: Request<pb::CreateUploadRequest>,
    ) -> Result<Response<pb::CreateUploadResponse>, Status> {
        let user = auth::caller(&request)?;
        let header = request
            .into_inner()
            .header
            .ok_or_else(|| Error::invalid("header is required"))?;
        let id = MediaId::generate();
        let turn = self.held.hold(&id, &user.0).await?;
        // Holding the upload's turn until its state is stored keeps the reaper, which
        // passes over uploads in use, from taking the slot back in between.
        let in_use = turn.lock().await;
        let created = resumable::create(&self.media, &id, &user.0, header).await;
        drop(in_use);
        match created {
            Ok(created) => {
                tracing::info!(upload_id = %id, owner = %user.0, "created a resumable upload");
                Ok(Response::new(created))
            }
            Err(e) => {
                self.held.release(&id).await;
                Err(e.into())
            }
        }
    }

    async fn write_upload(
        &self,
        request: Request<pb::WriteUploadRequest>,
    ) -> Result<Response<pb::WriteUploadResponse>, Status> {
        let user = auth::caller(&request)?;
        let request = request.into_inner();
        let id = parse_upload_id(&request.upload_id)?;
        let turn = self.open_turn(&id, &user.0).await?;
        let _turn = turn.lock().await;
        let loaded = resumable::load(&self.media, &id, &user.0).await?;
        let written = resumable::write(
            &self.media,
            loaded,
            request.offset,
            request.data,
            request.crc32c,
        )
        .await?;
        Ok(Response::new(written))
    }

    async fn query_upload(
        &self,
        request: Request<pb::QueryUploadRequest>,
    ) -> Result<Response<pb::QueryUploadResponse>, Status> {
        let user = auth::caller(&request)?;
        let id = parse_upload_id(&request.get_ref().upload_id)?;
        let loaded = resumable::load(&self.media, &id, &user.0).await?;
        if !loaded.committed() {
            // After a restart (or a move from another replica) the slot is taken again.
            self.held.hold(&id, &user.0).await?;
        }
        Ok(Response::new(resumable::query(&self.media, &loaded)))
    }

    async fn commit_upload(
        &self,
        request: Request<pb::CommitUploadRequest>,
    ) -> Result<Response<pb::CommitUploadResponse>, Status> {
        let user = auth::caller(&request)?;
        let request = request.into_inner();
        let id = parse_upload_id(&request.upload_id)?;
        // Held here: open (a commit through another replica is seen under the turn).
        let open_here = self.held.held_by(&id, &user.0).await.is_some();
        let committed = if open_here {
            None
        } else {
            Some(resumable::load(&self.media, &id, &user.0).await?).filter(|l| l.committed())
        };
        let result = if let Some(loaded) = committed {
            resumable::commit(&self.media, loaded, &request.sha256).await
        } else {
            let turn = self.open_turn(&id, &user.0).await?;
            let _turn = turn.lock().await;
            let loaded = resumable::load(&self.media, &id, &user.0).await?;
            let result = resumable::commit(&self.media, loaded, &request.sha256).await;
            let ended = match &result {
                Ok(_) => true,
                Err(Error::RefusedWith(reason, _, _)) => *reason == Reason::ChecksumMismatch,
                Err(Error::Refused(reason, _)) => *reason == Reason::MediaQuarantined,
                Err(_) => false,
            };
            if ended {
                self.held.release(&id).await;
                let counter = if result.is_ok() {
                    &METRICS.uploads_completed
                } else {
                    &METRICS.uploads_failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            result
        };
        let record = result?;
        tracing::info!(media_id = %record.media_id, upload_id = %id, size = record.size, owner = %record.owner, "stored media from a resumable upload");
        Ok(Response::new(pb::CommitUploadResponse {
            media: Some(record.to_proto()),
        }))
    }

    async fn get_media_url(
        &self,
        request: Request<pb::GetMediaUrlRequest>,
    ) -> Result<Response<pb::GetMediaUrlResponse>, Status> {
        let Some(links) = &self.links else {
            return Err(Status::unimplemented("this server mints no media links"));
        };
        let minter = Minter::of(&request)?;
        let (key, settings) = links.as_ref();
        let response = mint(
            &self.media,
            &self.thumbnailer,
            key,
            settings,
            &minter,
            request.into_inner(),
        )
        .await?;
        Ok(Response::new(response))
    }

    async fn delete_media(
        &self,
        request: Request<pb::DeleteMediaRequest>,
    ) -> Result<Response<pb::DeleteMediaResponse>, Status> {
        let user = auth::caller(&request)?;
        let id = MediaId::parse(&request.get_ref().media_id)?;
        super::delete_own(&self.media, &user.0, &id).await?;
        Ok(Response::new(pb::DeleteMediaResponse {}))
    }

    async fn cancel_upload(
        &self,
        request: Request<pb::CancelUploadRequest>,
    ) -> Result<Response<pb::CancelUploadResponse>, Status> {
        let user = auth::caller(&request)?;
        let id = parse_upload_id(&request.get_ref().upload_id)?;
        resumable::load(&self.media, &id, &user.0).await?;
        let turn = self.held.turn(&id).await;
        let _turn = match &turn {
            Some(turn) => Some(turn.lock().await),
            None => None,
        };
        let loaded = resumable::load(&self.media, &id, &user.0).await?;
        resumable::cancel(&self.media, loaded).await?;
        self.held.release(&id).await;
        METRICS.uploads_failed.fetch_add(1, Ordering::Relaxed);
        tracing::info!(upload_id = %id, "cancelled a resumable upload");
        Ok(Response::new(pb::CancelUploadResponse {}))
    }
}

impl MediaServer {
    /// Checks that upload `id` is `owner`'s (NOT_FOUND otherwise), holds a slot for it
    /// on this replica, and returns its turn lock. An upload whose slot this replica
    /// already holds for `owner` needs no read of its state here: the caller reads it
    /// under the turn.
    async fn open_turn(
        &self,
        id: &MediaId,
        owner: &str,
    ) -> Result<std::sync::Arc<tokio::sync::Mutex<()>>, Error> {
        if let Some(turn) = self.held.held_by(id, owner).await {
            return Ok(turn);
        }
        let loaded = resumable::load(&self.media, id, owner).await?;
        if loaded.committed() {
            return Ok(std::sync::Arc::default());
        }
        self.held.hold(id, owner).await
    }
}

/// Why a transfer ended when its token was revoked.
const REVOKED: &str = "the token of this transfer was revoked; call again with a new one";

/// Ends `items` once `fired` completes, with the error `why` makes as the last item.
fn ended_by<S, T, E>(
    items: S,
    fired: impl Future<Output = ()> + Send + 'static,
    why: impl FnOnce() -> E + Send + 'static,
) -> impl Stream<Item = Result<T, E>> + Unpin + Send + 'static
where
    S: Stream<Item = Result<T, E>> + Unpin + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    let was_fired = Arc::new(AtomicBool::new(false));
    let flag = was_fired.clone();
    let fired = async move {
        fired.await;
        flag.store(true, Ordering::Relaxed);
    };
    let last =
        futures::stream::once(async move { was_fired.load(Ordering::Relaxed).then(|| Err(why())) })
            .filter_map(futures::future::ready);
    items.take_until(Box::pin(fired)).chain(last).boxed()
}

/// Ends `frames` with UNAVAILABLE once `abort` turns true, so that the upload stops
/// and cleans up like any other failed upload.
fn until_aborted<S>(
    frames: S,
    mut abort: watch::Receiver<bool>,
) -> impl Stream<Item = Result<Frame, Error>> + Unpin + Send + 'static
where
    S: Stream<Item = Result<Frame, Error>> + Unpin + Send + 'static,
{
    let fired = async move {
        if abort.wait_for(|aborted| *aborted).await.is_err() {
            // The server is gone without aborting: nothing to end.
            std::future::pending::<()>().await;
        }
    };
    ended_by(frames, fired, || {
        Error::Unavailable("the server is shutting down".into())
    })
}

/// Turns one gRPC upload frame into a [`Frame`].
fn to_frame(request: pb::UploadMediaRequest) -> Result<Frame, Error> {
    match request.frame {
        Some(upload_media_request::Frame::Header(header)) => Ok(Frame::Header(header)),
        Some(upload_media_request::Frame::Data(data)) => Ok(Frame::Data(data)),
        None => Err(Error::invalid("an upload frame must hold a header or data")),
    }
}

/// The response stream of a download: the frames of `frames`, ending OK only once the
/// record and all `promised` bytes went through. A download that stopped short (its
/// reader stalled past the idle timeout, or the sending task ended early) ends with
/// the status its task left in `ended`, else INTERNAL, never with OK and bytes missing.
fn complete_or_fail(
    frames: ReceiverStream<Result<pb::DownloadMediaResponse, Status>>,
    promised: u64,
    ended: oneshot::Receiver<Status>,
) -> DownloadStream {
    struct State {
        frames: ReceiverStream<Result<pb::DownloadMediaResponse, Status>>,
        ended: oneshot::Receiver<Status>,
        record_sent: bool,
        bytes_sent: u64,
        finished: bool,
    }
    let state = State {
        frames,
        ended,
        record_sent: false,
        bytes_sent: 0,
        finished: false,
    };
    futures::stream::unfold(state, move |mut state| async move {
        if state.finished {
            return None;
        }
        let item = match state.frames.next().await {
            Some(Ok(frame)) => {
                match &frame.frame {
                    Some(download_media_response::Frame::Media(_)) => state.record_sent = true,
                    Some(download_media_response::Frame::Data(data)) => {
                        state.bytes_sent += data.len() as u64
                    }
                    None => {}
                }
                Ok(frame)
            }
            Some(Err(status)) => {
                state.finished = true;
                Err(status)
            }
            None if state.record_sent && state.bytes_sent == promised => return None,
            None => {
                state.finished = true;
                Err(state.ended.try_recv().unwrap_or_else(|_| {
                    Status::internal("the download ended before all its bytes were sent")
                }))
            }
        };
        Some((item, state))
    })
    .boxed()
}

/// Sends the record and then the bytes of a download. Stops when the client leaves
/// or reads nothing for the idle timeout (then leaves DEADLINE_EXCEEDED in `ended`,
/// for the reader to get after the frames already queued); the slot is freed when
/// this returns.
async fn send_download(
    download: Download,
    tx: mpsc::Sender<Result<pb::DownloadMediaResponse, Status>>,
    _slot: SlotGuard,
    idle: Duration,
    ended: oneshot::Sender<Status>,
) {
    METRICS.downloads_started.fetch_add(1, Ordering::Relaxed);
    let first = pb::DownloadMediaResponse {
        frame: Some(download_media_response::Frame::Media(
            download.record.to_proto(),
        )),
    };
    if let Err(stop) = send_within(&tx, Ok(first), idle).await {
        stop.report(ended);
        return;
    }
    let mut data = download.data;
    while let Some(chunk) = data.next().await {
        let frame = chunk.map(|bytes| {
            METRICS
                .download_bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            pb::DownloadMediaResponse {
                frame: Some(download_media_response::Frame::Data(bytes)),
            }
        });
        let failed = frame.is_err();
        if let Err(stop) = send_within(&tx, frame.map_err(Status::from), idle).await {
            stop.report(ended);
            return;
        }
        if failed {
            return;
        }
    }
}

/// Why a download stopped sending.
enum Stop {
    /// The client has left: nobody to tell.
    Left,
    /// The reader took nothing for the idle timeout.
    Stalled(Duration),
}

impl Stop {
    /// Leaves the status the reader gets after the frames already queued.
    fn report(self, ended: oneshot::Sender<Status>) {
        if let Self::Stalled(idle) = self {
            let _ = ended.send(Status::deadline_exceeded(format!(
                "the download was ended: nothing was read for {}s (the server's idle timeout); resume it from the last byte received",
                idle.as_secs_f32()
            )));
        }
    }
}

/// Sends one frame, giving up if the client has left or reads nothing for `idle`.
async fn send_within(
    tx: &mpsc::Sender<Result<pb::DownloadMediaResponse, Status>>,
    frame: Result<pb::DownloadMediaResponse, Status>,
    idle: Duration,
) -> Result<(), Stop> {
    match tokio::time::timeout(idle, tx.send(frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Stop::Left),
        Err(_) => {
            tracing::info!("a download's reader stalled past the idle timeout; ending it");
            Err(Stop::Stalled(idle))
        }
    }
}
