//! MediaService, black-box: every rule of DESIGN.md's media section, over real gRPC to a
//! real server process, once on a local folder and once on a real S3-compatible server.

#[macro_use]
mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{
    Backend, Server, authed, data_frame, data_frames, download, encode_image, expect_code, header,
    header_frame, open_upload, pattern, sha256, token, upload_bytes, upload_frames,
};
use courier_server::pb::media_service_client::MediaServiceClient;
use courier_server::pb::{self, MediaKind};
use tonic::{Code, transport::Channel};

const MIB: usize = 1024 * 1024;
const MAX: usize = 30 * MIB;

/// Uploads `data` (small) as a file and returns its record.
async fn upload_small(
    client: &mut MediaServiceClient<Channel>,
    token: &str,
    data: &Bytes,
) -> pb::Media {
    let head = header(MediaKind::File, "f", data.len() as u64);
    upload_bytes(client, token, head, data)
        .await
        .expect("upload")
}

on_every_backend!(
    round_trip_one_byte,
    round_trip_64_kib,
    round_trip_30_mib_exactly,
    oversize_refused_with_nothing_kept,
    more_than_declared_is_cut_off,
    empty_refused,
    fewer_than_declared_refused,
    sha256_mismatch_refused,
    data_before_header_refused,
    two_headers_refused,
    image_dimensions_from_headers,
    cancel_mid_upload_leaves_nothing,
    tenth_transfer_refused,
    ranged_downloads,
    unknown_id_not_found,
    hostile_ids_refused,
    expired_media_gone,
    stalled_upload_cleaned_up,
    shutdown_aborts_open_uploads,
    stalled_download_frees_its_slot,
);

/// Uploads `data` and checks that it comes back byte for byte with a right record.
async fn round_trip(backend: Backend, size: usize) {
    let server = Server::start(&backend, &[]);
    let mut client = server.media().await;
    let alice = token("alice");
    let data = pattern(size, 1);
    let mut head = header(MediaKind::File, "notes.bin", size as u64);
    head.sha256 = sha256(&data).into();
    let media = upload_bytes(&mut client, &alice, head, &data)
        .await
        .expect("upload");
    assert_eq!(media.size, size as u64);
    assert_eq!(media.kind(), MediaKind::File);
    assert_eq!(media.file_name, "notes.bin");
    assert_eq!(media.sha256.as_ref(), sha256(&data).as_slice());
    assert_eq!(media.content_type, "application/octet-stream");
    assert_eq!(media.media_id.len(), 32);
    let (created, expires) = (
        media.create_time.expect("create_time"),
        media.expire_time.expect("expire_time"),
    );
    assert_eq!(
        expires.seconds - created.seconds,
        7 * 24 * 3600,
        "media live 7 days by default"
    );

    let bob = token("bob");
    let (record, bytes) = download(&mut client, &bob, &media.media_id, 0, 0)
        .await
        .expect("download");
    assert_eq!(record, media);
    assert!(bytes == data, "downloaded bytes differ from the upload");
    let got = client
        .get_media(authed(
            &bob,
            pb::GetMediaRequest {
                media_id: media.media_id.clone(),
            },
        ))
        .await
        .expect("GetMedia")
        .into_inner();
    assert_eq!(got.media, Some(media));
}

async fn round_trip_one_byte(backend: Backend) {
    round_trip(backend, 1).await;
}

async fn round_trip_64_kib(backend: Backend) {
    round_trip(backend, 64 * 1024).await;
}

async fn round_trip_30_mib_exactly(backend: Backend) {
    round_trip(backend, MAX).await;
}

/// An upload of `data` under `head`, as frames.
fn frames_of(head: pb::UploadHeader, data: &Bytes) -> Vec<pb::UploadMediaRequest> {
    let mut frames = vec![header_frame(head)];
    frames.extend(data_frames(data, 256 * 1024));
    frames
}

/// Sends `frames` as alice and checks that the upload is refused with INVALID_ARGUMENT
/// and a message holding `says`, and that the store is left empty.
async fn expect_refused(server: &Server, frames: Vec<pb::UploadMediaRequest>, says: &str) {
    let mut client = server.media().await;
    let result = upload_frames(&mut client, &token("alice"), frames).await;
    let message = expect_code(result, Code::InvalidArgument);
    assert!(message.contains(says), "{message:?} does not say {says:?}");
    server.wait_stored(&[]).await;
}

async fn oversize_refused_with_nothing_kept(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let data = pattern(MAX + 1, 2);
    let head = header(MediaKind::File, "big", data.len() as u64);
    // The message names the limit.
    expect_refused(&server, frames_of(head, &data), "31457280 bytes").await;
}

async fn more_than_declared_is_cut_off(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let data = pattern(MAX + 1, 3);
    let head = header(MediaKind::File, "big", MAX as u64);
    expect_refused(
        &server,
        frames_of(head, &data),
        "more than the declared size",
    )
    .await;
}

async fn empty_refused(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let head = header(MediaKind::File, "empty", 0);
    expect_refused(&server, vec![header_frame(head)], "empty").await;
}

async fn fewer_than_declared_refused(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let data = pattern(6 * MIB, 4);
    let head = header(MediaKind::File, "short", 7 * MIB as u64);
    expect_refused(&server, frames_of(head, &data), "ended after 6291456 bytes").await;
}

async fn sha256_mismatch_refused(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let data = pattern(100_000, 5);
    let mut head = header(MediaKind::File, "x", data.len() as u64);
    head.sha256 = sha256(b"something else").into();
    expect_refused(&server, frames_of(head.clone(), &data), "SHA-256").await;
    head.sha256 = Bytes::from_static(b"short");
    expect_refused(&server, frames_of(head, &data), "must be 32 bytes").await;
}

async fn data_before_header_refused(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let frames = vec![
        data_frame(Bytes::from_static(b"hi")),
        header_frame(header(MediaKind::File, "x", 2)),
    ];
    expect_refused(&server, frames, "first frame").await;
    expect_refused(&server, vec![], "no header").await;
}

async fn two_headers_refused(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let frames = vec![
        header_frame(header(MediaKind::File, "x", 4)),
        data_frame(Bytes::from_static(b"ab")),
        header_frame(header(MediaKind::File, "x", 4)),
        data_frame(Bytes::from_static(b"cd")),
    ];
    expect_refused(&server, frames, "exactly one header").await;
    // Headers that break a rule are refused too.
    for (bad, says) in [
        (header(MediaKind::Unspecified, "x", 1), "kind"),
        (header(MediaKind::File, "", 1), "file_name"),
        (header(MediaKind::File, "a\nb", 1), "control characters"),
        (header(MediaKind::File, &"n".repeat(256), 1), "file_name"),
    ] {
        let data = Bytes::from_static(b"a");
        expect_refused(&server, frames_of(bad, &data), says).await;
    }
}

async fn image_dimensions_from_headers(backend: Backend) {
    use common::ImageFormat::*;
    let server = Server::start(&backend, &[]);
    let mut client = server.media().await;
    let alice = token("alice");
    for (format, width, height, mime) in [
        (Jpeg, 64, 48, "image/jpeg"),
        (Png, 33, 17, "image/png"),
        (Bmp, 20, 30, "image/bmp"),
        (Gif, 15, 9, "image/gif"),
        (WebP, 40, 25, "image/webp"),
    ] {
        let data = encode_image(format, width, height);
        let name = format!("img.{}", format.extensions_str()[0]);
        let media = upload_bytes(
            &mut client,
            &alice,
            header(MediaKind::Image, &name, data.len() as u64),
            &data,
        )
        .await
        .expect("upload");
        assert_eq!((media.width, media.height), (width, height), "{format:?}");
        assert_eq!(media.content_type, mime, "{format:?}");
        assert_eq!(media.kind(), MediaKind::Image);
    }
    let text = Bytes::from_static(b"just some text, not an image");
    let media = upload_bytes(
        &mut client,
        &alice,
        header(MediaKind::Image, "a.txt", text.len() as u64),
        &text,
    )
    .await
    .expect("upload");
    assert_eq!((media.width, media.height), (0, 0));
    // A content type that the uploader gives wins over detection.
    let png = encode_image(Png, 2, 2);
    let mut head = header(MediaKind::Image, "a.png", png.len() as u64);
    head.content_type = "image/x-custom".into();
    let media = upload_bytes(&mut client, &alice, head, &png)
        .await
        .expect("upload");
    assert_eq!(
        (media.content_type.as_str(), media.width),
        ("image/x-custom", 2)
    );
}

async fn cancel_mid_upload_leaves_nothing(backend: Backend) {
    let server = Server::start(&backend, &["--max-transfers-per-user", "1"]);
    // 6 MiB sent of 20: past the first part (1 MiB locally, 5 MiB on S3), so a
    // multipart upload is under way.
    let (tx, call) = open_upload(&server, "alice", 20 * MIB, 6 * MIB).await;
    server.wait_in_flight(1).await;
    call.abort();
    drop(tx);
    // The slot is free at once: the server notices the reset and releases it.
    server.wait_in_flight(0).await;
    server.wait_stored(&[]).await;
    // With a limit of one transfer, a new upload succeeds only if the slot is free.
    let mut client = server.media().await;
    let data = pattern(1000, 7);
    upload_small(&mut client, &token("alice"), &data).await;
    assert_eq!(server.metric("courier_uploads_failed_total").await, 1);
}

async fn tenth_transfer_refused(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let mut client = server.media().await;
    let alice = token("alice");
    let data = pattern(1000, 8);
    let stored = upload_small(&mut client, &alice, &data).await;
    let mut open = Vec::new();
    for _ in 0..9 {
        open.push(open_upload(&server, "alice", 10 * MIB, 64 * 1024).await);
    }
    server.wait_in_flight(9).await;
    let message = expect_code(
        upload_bytes(
            &mut client,
            &alice,
            header(MediaKind::File, "f", 1000),
            &data,
        )
        .await,
        Code::ResourceExhausted,
    );
    assert!(message.contains("at most 9"), "{message}");
    expect_code(
        download(&mut client, &alice, &stored.media_id, 0, 0).await,
        Code::ResourceExhausted,
    );
    // Another user has slots of their own.
    download(&mut client, &token("bob"), &stored.media_id, 0, 0)
        .await
        .expect("bob downloads");
    // Finishing one of alice's transfers frees its slot at once.
    let (tx, call) = open.pop().expect("nine uploads");
    for frame in data_frames(&pattern(10 * MIB - 64 * 1024, 9), 256 * 1024) {
        tx.send(frame).await.expect("data");
    }
    drop(tx);
    call.await.expect("task").expect("the upload completes");
    download(&mut client, &alice, &stored.media_id, 0, 0)
        .await
        .expect("the freed slot serves a download");
}

async fn ranged_downloads(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let mut client = server.media().await;
    let alice = token("alice");
    let data = pattern(3 * MIB + 17, 10);
    let media = upload_bytes(
        &mut client,
        &alice,
        header(MediaKind::File, "f", data.len() as u64),
        &data,
    )
    .await
    .expect("upload");
    let id = media.media_id.as_str();
    let (_, bytes) = download(&mut client, &alice, id, 1000, 5000)
        .await
        .expect("range");
    assert!(bytes == data[1000..6000]);
    let (_, bytes) = download(&mut client, &alice, id, MIB as u64 + 3, 0)
        .await
        .expect("resume");
    assert!(bytes == data[MIB + 3..]);
    let (_, bytes) = download(&mut client, &alice, id, 10, 100 * MIB as u64)
        .await
        .expect("long length");
    assert!(bytes == data[10..]);
    let (record, bytes) = download(&mut client, &alice, id, data.len() as u64, 0)
        .await
        .expect("at the end");
    assert!(bytes.is_empty());
    assert_eq!(record, media);
    let message = expect_code(
        download(&mut client, &alice, id, data.len() as u64 + 1, 0).await,
        Code::OutOfRange,
    );
    assert!(message.contains("past the end"), "{message}");
}

async fn unknown_id_not_found(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let mut client = server.media().await;
    let alice = token("alice");
    let id = "0123456789abcdef0123456789abcdef";
    expect_code(
        download(&mut client, &alice, id, 0, 0).await,
        Code::NotFound,
    );
    let result = client
        .get_media(authed(
            &alice,
            pb::GetMediaRequest {
                media_id: id.into(),
            },
        ))
        .await;
    expect_code(result, Code::NotFound);
}

async fn hostile_ids_refused(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let mut client = server.media().await;
    let alice = token("alice");
    // A record planted where a path built from "../x" would lead: it must never be read.
    let long = "a".repeat(300);
    for id in [
        "../x",
        "a/b",
        long.as_str(),
        "",
        "../records/0123456789abcdef0123456789abcdef",
    ] {
        let message = expect_code(
            download(&mut client, &alice, id, 0, 0).await,
            Code::InvalidArgument,
        );
        assert!(message.contains("media_id"), "{message}");
        let result = client
            .get_media(authed(
                &alice,
                pb::GetMediaRequest {
                    media_id: id.into(),
                },
            ))
            .await;
        expect_code(result, Code::InvalidArgument);
    }
    assert_eq!(server.stored().await, Vec::<String>::new());
}

async fn expired_media_gone(backend: Backend) {
    // First with the sweeper idle: expired media must be NOT_FOUND at once, while
    // their bytes are still in the store.
    let mut server = Server::start(&backend, &["--media-ttl", "2s", "--sweep-interval", "1h"]);
    let mut client = server.media().await;
    let alice = token("alice");
    let data = pattern(1000, 11);
    let media = upload_small(&mut client, &alice, &data).await;
    let blob = format!("content/{}", hex::encode(&media.sha256));
    let expires = media.expire_time.expect("expire_time");
    let created = media.create_time.expect("create_time");
    assert_eq!(expires.seconds - created.seconds, 2);
    download(&mut client, &alice, &media.media_id, 0, 0)
        .await
        .expect("alive before expiry");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    expect_code(
        download(&mut client, &alice, &media.media_id, 0, 0).await,
        Code::NotFound,
    );
    let get = pb::GetMediaRequest {
        media_id: media.media_id.clone(),
    };
    expect_code(
        client.get_media(authed(&alice, get.clone())).await,
        Code::NotFound,
    );
    assert!(server.has(&blob).await, "nothing has swept yet");
    // Then with the sweeper running: it deletes the bytes and the record.
    server.restart(&[
        "--media-ttl",
        "2s",
        "--sweep-interval",
        "200ms",
        "--content-grace",
        "200ms",
    ]);
    server.wait_stored(&[]).await;
    let mut client = server.media().await;
    expect_code(client.get_media(authed(&alice, get)).await, Code::NotFound);
}

async fn stalled_upload_cleaned_up(backend: Backend) {
    let server = Server::start(&backend, &["--idle-timeout", "2s"]);
    let (tx, call) = open_upload(&server, "alice", 10 * MIB, 6 * MIB).await;
    server.wait_in_flight(1).await;
    // Send nothing more: the server gives up after the idle timeout.
    let result = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("ends")
        .expect("task");
    let message = expect_code(result, Code::DeadlineExceeded);
    assert!(message.contains("idle timeout"), "{message}");
    drop(tx);
    server.wait_in_flight(0).await;
    server.wait_stored(&[]).await;
}

async fn shutdown_aborts_open_uploads(backend: Backend) {
    let mut server = Server::start(&backend, &["--shutdown-grace", "1s"]);
    let (tx, call) = open_upload(&server, "alice", 20 * MIB, 6 * MIB).await;
    server.wait_in_flight(1).await;
    server.terminate();
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("the server exits after its grace period");
    assert!(status.success(), "exit status {status:?}");
    let result = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the call ends")
        .expect("task");
    assert!(
        result.is_err(),
        "an upload cut short by shutdown must not succeed"
    );
    drop(tx);
    // The aborted upload removed its partial data before the process exited.
    assert_eq!(server.stored().await, Vec::<String>::new());
}

async fn stalled_download_frees_its_slot(backend: Backend) {
    let server = Server::start(
        &backend,
        &["--idle-timeout", "1s", "--max-transfers-per-user", "1"],
    );
    let mut client = server.media().await;
    let alice = token("alice");
    let data = pattern(MAX, 12);
    let media = upload_bytes(
        &mut client,
        &alice,
        header(MediaKind::File, "f", MAX as u64),
        &data,
    )
    .await
    .expect("upload");
    let request = pb::DownloadMediaRequest {
        media_id: media.media_id.clone(),
        ..Default::default()
    };
    let mut stalled = client
        .download_media(authed(&alice, request))
        .await
        .expect("download")
        .into_inner();
    let first = stalled.message().await.expect("frame").expect("the record");
    assert!(matches!(
        first.frame,
        Some(pb::download_media_response::Frame::Media(_))
    ));
    server.wait_in_flight(1).await;
    // Read nothing more: flow control fills, the server's sends stall, and after the
    // idle timeout it ends the download and frees the slot (the limit here is one).
    server.wait_in_flight(0).await;
    let (_, bytes) = download(&mut client, &alice, &media.media_id, 0, 1000)
        .await
        .expect("the slot is free");
    assert!(bytes == data[..1000]);
    // Read at last, the stalled stream holds what was queued and then ends with
    // DEADLINE_EXCEEDED: never OK with bytes missing.
    let mut received = 0;
    let status = loop {
        match stalled.message().await {
            Ok(Some(frame)) => {
                if let Some(pb::download_media_response::Frame::Data(chunk)) = frame.frame {
                    received += chunk.len();
                }
            }
            Ok(None) => panic!("a stalled download ended OK after {received} of {MAX} bytes"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(received < MAX);
}
