//! Requests that are the client's fault at the wire level — frames over the message
//! limit, strings that are not UTF-8, oversized metadata, tokens with odd claims — each
//! get a status that blames the request and says what was wrong: never CANCELLED,
//! INTERNAL or UNKNOWN.

mod common;

use bytes::Bytes;
use common::{
    Backend, Server, authed, data_frame, expect_code, header, header_frame, now_secs, token,
    token_with_claims, upload_frames,
};
use courier_server::pb::{self, MediaKind};
use serde_json::json;
use tonic::{Code, Request, codegen::http::uri::PathAndQuery};

/// `courier.v1.GetMediaRequest` with its string field as raw bytes, so a test can send
/// what a correct client never would.
#[derive(Clone, PartialEq, prost::Message)]
struct RawGetMediaRequest {
    #[prost(bytes = "vec", tag = "1")]
    media_id: Vec<u8>,
}

/// `courier.v1.UploadHeader` with its file name as raw bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct RawUploadHeader {
    #[prost(int32, tag = "1")]
    kind: i32,
    #[prost(bytes = "vec", tag = "2")]
    file_name: Vec<u8>,
    #[prost(uint64, tag = "3")]
    size: u64,
}

/// `courier.v1.UploadMediaRequest` carrying a [`RawUploadHeader`].
#[derive(Clone, PartialEq, prost::Message)]
struct RawUploadMediaRequest {
    #[prost(message, optional, tag = "1")]
    header: Option<RawUploadHeader>,
}

/// A generic gRPC client over the server's channel.
async fn raw_client(server: &Server) -> tonic::client::Grpc<tonic::transport::Channel> {
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.expect("ready");
    grpc
}

#[tokio::test]
async fn strings_that_are_not_utf8_are_invalid_arguments() {
    let server = Server::start(&Backend::Local, &[]);
    let alice = token("alice");

    let mut grpc = raw_client(&server).await;
    let request = RawGetMediaRequest {
        media_id: vec![0xff, 0xfe, b'a'],
    };
    let result: Result<tonic::Response<pb::GetMediaResponse>, _> = grpc
        .unary(
            authed(&alice, request),
            PathAndQuery::from_static("/courier.v1.MediaService/GetMedia"),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    let message = expect_code(result, Code::InvalidArgument);
    assert!(message.contains("could not be decoded"), "{message}");

    let mut grpc = raw_client(&server).await;
    let header = RawUploadHeader {
        kind: MediaKind::File as i32,
        file_name: b"bad\xffname".to_vec(),
        size: 3,
    };
    let frames = futures::stream::iter([RawUploadMediaRequest {
        header: Some(header),
    }]);
    let result: Result<tonic::Response<pb::UploadMediaResponse>, _> = grpc
        .client_streaming(
            authed(&alice, frames),
            PathAndQuery::from_static("/courier.v1.MediaService/UploadMedia"),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    let message = expect_code(result, Code::InvalidArgument);
    assert!(message.contains("could not be decoded"), "{message}");
    server.wait_in_flight(0).await;
    assert_eq!(server.stored().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_frame_over_the_message_limit_is_resource_exhausted() {
    let server = Server::start(&Backend::Local, &[]);
    let alice = token("alice");
    for size in [4 * 1024 * 1024 + 1, 9 * 1024 * 1024] {
        let mut client = server.media().await.max_encoding_message_size(usize::MAX);
        let frames = vec![
            header_frame(header(MediaKind::File, "big.bin", size as u64)),
            data_frame(Bytes::from(vec![7u8; size])),
        ];
        let message = expect_code(
            upload_frames(&mut client, &alice, frames).await,
            Code::ResourceExhausted,
        );
        // Under and over the transport's own 8 MiB ceiling, the same words.
        assert!(
            message.contains("over the limit of 4194304 bytes (4 MiB)"),
            "{size}: {message}"
        );
        server.wait_in_flight(0).await;
        assert_eq!(server.stored().await, Vec::<String>::new());
    }
}

#[tokio::test]
async fn every_oversized_request_is_refused_alike_naming_its_limit() {
    let server = Server::start(&Backend::Local, &[]);
    let alice = token("alice");
    let mut media = server.media().await.max_encoding_message_size(usize::MAX);
    // A resumable part past the 8 MiB part limit (the transport's ceiling too).
    let part = pb::WriteUploadRequest {
        upload_id: "0123456789abcdef0123456789abcdef".into(),
        offset: 0,
        data: Bytes::from(vec![1u8; 9 * 1024 * 1024]),
        crc32c: 0,
    };
    let message = expect_code(
        media.write_upload(authed(&alice, part)).await,
        Code::ResourceExhausted,
    );
    assert!(
        message.contains("over the limit of 8388608 bytes (8 MiB)"),
        "{message}"
    );
    // Any other unary request past 4 MiB, under and over the transport's ceiling.
    let mut messaging =
        pb::messaging_service_client::MessagingServiceClient::new(server.channel().await)
            .max_encoding_message_size(usize::MAX);
    for size in [5 * 1024 * 1024, 9 * 1024 * 1024] {
        let request = pb::SendPeerMessageRequest {
            peer_id: "bob".into(),
            message: Some(pb::Message {
                body: Some(pb::message::Body::Text(pb::TextMessage {
                    text: "x".repeat(size),
                })),
            }),
            ..Default::default()
        };
        let message = expect_code(
            messaging.send_peer_message(authed(&alice, request)).await,
            Code::ResourceExhausted,
        );
        assert!(
            message.contains("over the limit of 4194304 bytes (4 MiB)"),
            "{size}: {message}"
        );
    }
}

#[tokio::test]
async fn long_metadata_is_read_and_a_long_token_refused_with_a_reason() {
    let server = Server::start(&Backend::Local, &[]);
    let mut client = server.media().await;
    let get = || pb::GetMediaRequest {
        media_id: "0123456789abcdef0123456789abcdef".into(),
    };
    // 20 KiB: past HTTP/2's customary 16 KiB header list, inside the server's 64 KiB.
    let long = "x".repeat(20 * 1024);
    let message = expect_code(
        client.get_media(authed(&long, get())).await,
        Code::Unauthenticated,
    );
    assert!(message.contains("at most 8192"), "{message}");
    // Other long metadata is read too; the call goes through.
    let mut request = authed(&token("alice"), get());
    request
        .metadata_mut()
        .insert("x-trace", long.parse().expect("ascii"));
    expect_code(client.get_media(request).await, Code::NotFound);
}

#[tokio::test]
async fn token_claims_sub_and_exp_required_nbf_honoured_iat_optional() {
    let server = Server::start(&Backend::Local, &[]);
    let mut client = server.media().await;
    let get = || pb::GetMediaRequest {
        media_id: "0123456789abcdef0123456789abcdef".into(),
    };
    let now = now_secs();
    let call = |token: String| {
        let mut client = client.clone();
        async move { client.get_media(authed(&token, get())).await }
    };

    // Only sub and exp: accepted (the media simply does not exist).
    let minimal = token_with_claims(&json!({"sub": "alice", "exp": now + 600}));
    expect_code(call(minimal).await, Code::NotFound);
    // nbf in the past: accepted; in the future: refused.
    let ripe = token_with_claims(&json!({"sub": "alice", "exp": now + 600, "nbf": now - 60}));
    expect_code(call(ripe).await, Code::NotFound);
    let early = token_with_claims(&json!({"sub": "alice", "exp": now + 600, "nbf": now + 300}));
    let message = expect_code(call(early).await, Code::Unauthenticated);
    assert!(message.contains("not valid yet"), "{message}");
    // No exp, or no sub: refused, naming the claim.
    let forever = token_with_claims(&json!({"sub": "alice"}));
    let message = expect_code(call(forever).await, Code::Unauthenticated);
    assert!(message.contains("exp"), "{message}");
    let nobody = token_with_claims(&json!({"exp": now + 600}));
    let message = expect_code(call(nobody).await, Code::Unauthenticated);
    assert!(message.contains("sub"), "{message}");
    drop(client.get_media(Request::new(get())).await);
}
