//! The Rust client's thumbnails: `Client::thumbnail` returns the server's upright
//! thumbnail, refusals arrive as typed errors, and an image message can carry the
//! server's thumbnail to its receiver.

use std::time::Duration;

use bytes::Bytes;
use courier_client::{Client, Error, Event, MESSAGE_THUMBNAIL_EDGE, Message, SendOptions};
use courier_testkit::{
    Backend, Server, decoded_size, png_declaring, token, two_tone_jpeg, with_exif_orientation,
};
use futures::StreamExt;

async fn client(server: &Server, user: &str) -> Client {
    Client::connect(&server.url(), &token(user))
        .await
        .expect("connects")
}

#[tokio::test]
async fn thumbnail_is_upright_and_refusals_are_typed() {
    let server = Server::start(&Backend::Local, &[]);
    let alice = client(&server, "alice").await;
    // Stored 400 x 200, EXIF orientation 6: upright 200 x 400.
    let jpeg = with_exif_orientation(&two_tone_jpeg(400, 200), 6);
    let media = alice
        .upload_image_bytes("turned.jpg", jpeg)
        .expect("starts")
        .await
        .expect("uploads");
    assert_eq!((media.width, media.height), (200, 400));
    let thumb = alice
        .thumbnail(&media.media_id, 100)
        .await
        .expect("thumbnail");
    assert_eq!(thumb.content_type, "image/jpeg");
    assert_eq!(thumb.extension(), "jpg");
    assert_eq!(
        (thumb.width, thumb.height),
        (160, 320),
        "100 rounds up to 320"
    );
    assert_eq!(decoded_size(&thumb.data), (160, 320));

    let file = alice
        .upload_file_bytes("notes.txt", Bytes::from_static(b"no picture here"))
        .expect("starts")
        .await
        .expect("uploads");
    match alice.thumbnail(&file.media_id, 96).await {
        Err(Error::NotAnImage(message)) => assert!(message.contains(&file.media_id)),
        other => panic!("{other:?}"),
    }
    let bomb = alice
        .upload_image_bytes("bomb.png", png_declaring(100_000, 100_000))
        .expect("starts")
        .await
        .expect("uploads");
    match alice.thumbnail(&bomb.media_id, 96).await {
        Err(e @ Error::ImageRefused(_)) => {
            assert_eq!(e.code(), tonic::Code::FailedPrecondition);
            assert_eq!(e.reason(), Some(courier_client::ErrorReason::ImageRefused));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        alice.thumbnail(&media.media_id, 0).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        alice
            .thumbnail("00112233445566778899aabbccddeeff", 96)
            .await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn an_image_message_carries_the_servers_thumbnail() {
    let server = Server::start(&Backend::Local, &[]);
    let alice = client(&server, "alice").await;
    let bob = client(&server, "bob").await;
    let jpeg = with_exif_orientation(&two_tone_jpeg(600, 300), 8);
    let media = alice
        .upload_image_bytes("turned.jpg", jpeg)
        .expect("starts")
        .await
        .expect("uploads");
    let message = alice
        .image_message_with_thumbnail(&media.media_id)
        .await
        .expect("a message");
    let Message::Image(image) = &message else {
        panic!("{message:?}")
    };
    assert_eq!(MESSAGE_THUMBNAIL_EDGE, 96);
    assert_eq!((image.width, image.height), (300, 600));
    assert_eq!((image.thumbnail_width, image.thumbnail_height), (48, 96));
    assert_eq!(decoded_size(&image.thumbnail), (48, 96));
    // A thumbnail already set is kept; other messages pass unchanged.
    let mut own = image.clone();
    own.thumbnail = Bytes::from_static(b"mine");
    let kept = alice
        .fill_thumbnail(Message::Image(own.clone()))
        .await
        .expect("kept");
    assert_eq!(kept, Message::Image(own));
    let text = alice
        .fill_thumbnail(Message::text("hi"))
        .await
        .expect("text");
    assert_eq!(text, Message::text("hi"));

    alice
        .send_peer_message("bob", message.clone(), SendOptions::offline())
        .await
        .expect("sends");
    let mut feed = bob.subscribe();
    let received = loop {
        let event = tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .expect("an event in time")
            .expect("the feed is open")
            .expect("no error");
        match event {
            Event::Message(received) => break received,
            _ => continue,
        }
    };
    assert_eq!(received.message, message, "bob gets the thumbnail as sent");
}
