//! MediaService helpers over raw gRPC: headers, frames, uploads and downloads.

use bytes::Bytes;
use courier_server::pb::{
    self, download_media_response, media_service_client::MediaServiceClient, upload_media_request,
};
use tonic::{Status, transport::Channel};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::{Server, authed, pattern};

/// An upload header.
pub fn header(kind: pb::MediaKind, name: &str, size: u64) -> pb::UploadHeader {
    pb::UploadHeader {
        kind: kind.into(),
        file_name: name.to_owned(),
        size,
        ..Default::default()
    }
}

/// A header frame.
pub fn header_frame(header: pb::UploadHeader) -> pb::UploadMediaRequest {
    pb::UploadMediaRequest {
        frame: Some(upload_media_request::Frame::Header(header)),
    }
}

/// A data frame.
pub fn data_frame(data: Bytes) -> pb::UploadMediaRequest {
    pb::UploadMediaRequest {
        frame: Some(upload_media_request::Frame::Data(data)),
    }
}

/// `data` split into frames of `chunk` bytes.
pub fn data_frames(data: &Bytes, chunk: usize) -> Vec<pb::UploadMediaRequest> {
    (0..data.len())
        .step_by(chunk.max(1))
        .map(|i| data_frame(data.slice(i..(i + chunk).min(data.len()))))
        .collect()
}

/// Sends exactly `frames` as one upload.
pub async fn upload_frames(
    client: &mut MediaServiceClient<Channel>,
    token: &str,
    frames: Vec<pb::UploadMediaRequest>,
) -> Result<pb::Media, Status> {
    let response = client
        .upload_media(authed(token, futures::stream::iter(frames)))
        .await?;
    Ok(response
        .into_inner()
        .media
        .expect("the response holds the media record"))
}

/// Uploads `data` as one header and 256 KiB frames.
pub async fn upload_bytes(
    client: &mut MediaServiceClient<Channel>,
    token: &str,
    header: pb::UploadHeader,
    data: &Bytes,
) -> Result<pb::Media, Status> {
    let mut frames = vec![header_frame(header)];
    frames.extend(data_frames(data, 256 * 1024));
    upload_frames(client, token, frames).await
}

/// Downloads a range and returns the record and the bytes.
pub async fn download(
    client: &mut MediaServiceClient<Channel>,
    token: &str,
    media_id: &str,
    offset: u64,
    length: u64,
) -> Result<(pb::Media, Vec<u8>), Status> {
    let request = pb::DownloadMediaRequest {
        media_id: media_id.to_owned(),
        offset,
        length,
    };
    let mut stream = client
        .download_media(authed(token, request))
        .await?
        .into_inner();
    let mut record = None;
    let mut bytes = Vec::new();
    while let Some(frame) = stream.message().await? {
        match frame.frame {
            Some(download_media_response::Frame::Media(media)) => {
                assert!(record.is_none(), "the record must come once");
                assert!(bytes.is_empty(), "the record must come first");
                record = Some(media);
            }
            Some(download_media_response::Frame::Data(data)) => bytes.extend_from_slice(&data),
            None => panic!("an empty download frame"),
        }
    }
    Ok((record.expect("the download starts with the record"), bytes))
}

/// Starts an upload fed by a channel, sends its header and `first` bytes, and returns
/// the sender and the call's task.
pub async fn open_upload(
    server: &Server,
    user: &str,
    size: usize,
    first: usize,
) -> (
    mpsc::Sender<pb::UploadMediaRequest>,
    tokio::task::JoinHandle<Result<pb::Media, tonic::Status>>,
) {
    let (tx, rx) = mpsc::channel(64);
    let mut client = server.media().await;
    let request = authed(&crate::token(user), ReceiverStream::new(rx));
    let call = tokio::spawn(async move {
        client
            .upload_media(request)
            .await
            .map(|r| r.into_inner().media.unwrap_or_default())
    });
    tx.send(header_frame(header(
        pb::MediaKind::File,
        "partial",
        size as u64,
    )))
    .await
    .expect("header");
    for frame in data_frames(&pattern(first, 6), 256 * 1024) {
        tx.send(frame).await.expect("data");
    }
    (tx, call)
}
