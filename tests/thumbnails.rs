//! GetThumbnail (issue 16), black-box over gRPC against a real server, on a local folder
//! and on S3: EXIF orientation applied, every input format, the fixed sizes, hostile
//! images refused without the server's memory jumping, thumbnails stored beside the
//! image and served from the store after a restart, expiring with the media, the
//! previous store layout thumbnailed too, and random or mutated images answered with a
//! clear status every time.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{
    Backend, ImageFormat, Server, app_segment, authed, encode_image, expect_code, header,
    png_declaring, rss_kib, sha256, token, two_tone_jpeg, upload_bytes, with_exif_orientation,
};
use courier_server::pb::{self, MediaKind};
use object_store::{ObjectStoreExt, PutPayload, path::Path};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tonic::{Code, Status};
use tonic_types::StatusExt;

on_every_backend!(
    exif_rotated_jpeg_comes_back_upright,
    every_format_is_thumbnailed,
    transparency_gives_a_png,
    sizes_are_rounded_up,
    hostile_images_refused_without_memory_jumping,
    served_from_the_store_after_a_restart,
    thumbnails_expire_with_their_media,
    previous_layout_thumbnailed,
    random_and_mutated_images_get_a_clear_status,
);

/// Uploads `data` as an image and returns its record.
async fn put_image(server: &Server, data: &Bytes) -> pb::Media {
    let mut client = server.media().await;
    upload_bytes(
        &mut client,
        &token("alice"),
        header(MediaKind::Image, "picture", data.len() as u64),
        data,
    )
    .await
    .expect("upload")
}

/// GetThumbnail as bob (any user may ask).
async fn thumb(
    server: &Server,
    media_id: &str,
    max_edge: i32,
) -> Result<pb::GetThumbnailResponse, Status> {
    let mut client = server.media().await;
    let request = pb::GetThumbnailRequest {
        media_id: media_id.to_owned(),
        max_edge,
    };
    client
        .get_thumbnail(authed(&token("bob"), request))
        .await
        .map(|r| r.into_inner())
}

/// Decodes a thumbnail and checks that its bytes say what the response says.
fn decode(response: &pb::GetThumbnailResponse) -> image::RgbaImage {
    let format = match response.content_type.as_str() {
        "image/jpeg" => image::ImageFormat::Jpeg,
        "image/png" => image::ImageFormat::Png,
        other => panic!("unexpected content type {other}"),
    };
    assert_eq!(
        image::guess_format(&response.data).expect("a format"),
        format
    );
    let img = image::load_from_memory_with_format(&response.data, format)
        .expect("the thumbnail decodes")
        .to_rgba8();
    assert_eq!(
        (img.width(), img.height()),
        (response.width, response.height)
    );
    img
}

/// Whether a pixel is mostly red (else mostly blue), after JPEG's losses.
fn reddish(pixel: &image::Rgba<u8>) -> bool {
    pixel.0[0] > 150 && pixel.0[2] < 100
}

/// The reason of a refusal's ErrorInfo.
fn reason(status: &Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default()
}

async fn exif_rotated_jpeg_comes_back_upright(backend: Backend) {
    let server = Server::start(&backend, &[]);
    // Stored 400 x 200, left red and right blue; orientation 6 turns it a quarter
    // clockwise, so upright it is 200 x 400 with red on top.
    let plain = two_tone_jpeg(400, 200);
    for (orientation, upright) in [(6u16, (200, 400)), (8, (200, 400)), (1, (400, 200))] {
        let jpeg = with_exif_orientation(&plain, orientation);
        let media = put_image(&server, &jpeg).await;
        assert_eq!(
            (media.width, media.height),
            upright,
            "the record gives the upright size for orientation {orientation}"
        );
        let got = thumb(&server, &media.media_id, 96)
            .await
            .expect("thumbnail");
        assert_eq!(got.content_type, "image/jpeg");
        let expected = if upright.0 < upright.1 {
            (48, 96)
        } else {
            (96, 48)
        };
        assert_eq!(
            (got.width, got.height),
            expected,
            "orientation {orientation}"
        );
        let img = decode(&got);
        let (w, h) = (img.width(), img.height());
        let top = img.get_pixel(w / 2, 2);
        let bottom = img.get_pixel(w / 2, h - 3);
        let left = img.get_pixel(2, h / 2);
        let right = img.get_pixel(w - 3, h / 2);
        match orientation {
            // Turned clockwise: the left (red) side is on top.
            6 => assert!(reddish(top) && !reddish(bottom), "{top:?} {bottom:?}"),
            // Turned anticlockwise: the left (red) side is at the bottom.
            8 => assert!(!reddish(top) && reddish(bottom), "{top:?} {bottom:?}"),
            _ => assert!(reddish(left) && !reddish(right), "{left:?} {right:?}"),
        }
    }
}

async fn every_format_is_thumbnailed(backend: Backend) {
    let server = Server::start(&backend, &[]);
    for format in [
        ImageFormat::Jpeg,
        ImageFormat::Png,
        ImageFormat::Gif,
        ImageFormat::WebP,
        ImageFormat::Bmp,
    ] {
        let data = encode_image(format, 500, 250);
        let media = put_image(&server, &data).await;
        assert_eq!((media.width, media.height), (500, 250), "{format:?}");
        let got = thumb(&server, &media.media_id, 320)
            .await
            .unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!(got.content_type, "image/jpeg", "{format:?} is opaque");
        assert_eq!((got.width, got.height), (320, 160), "{format:?}");
        decode(&got);
    }
    // A GIF's first frame: two frames, the first red, the second blue.
    let mut gif = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new(&mut gif);
        for colour in [[230u8, 20, 20, 255], [20, 20, 230, 255]] {
            let frame =
                image::Frame::new(image::RgbaImage::from_pixel(40, 30, image::Rgba(colour)));
            encoder.encode_frame(frame).expect("a frame");
        }
    }
    let media = put_image(&server, &Bytes::from(gif)).await;
    let got = thumb(&server, &media.media_id, 96)
        .await
        .expect("thumbnail");
    assert_eq!((got.width, got.height), (40, 30), "not enlarged");
    let img = decode(&got);
    assert!(reddish(img.get_pixel(20, 15)), "the first frame");
}

async fn transparency_gives_a_png(backend: Backend) {
    let server = Server::start(&backend, &[]);
    // Half transparent: a PNG thumbnail that keeps the transparency.
    let sticker = image::RgbaImage::from_fn(200, 200, |x, _| {
        image::Rgba([10, 200, 10, if x < 100 { 0 } else { 255 }])
    });
    let mut png = std::io::Cursor::new(Vec::new());
    sticker
        .write_to(&mut png, image::ImageFormat::Png)
        .expect("png");
    let media = put_image(&server, &Bytes::from(png.into_inner())).await;
    let got = thumb(&server, &media.media_id, 96)
        .await
        .expect("thumbnail");
    assert_eq!(got.content_type, "image/png");
    assert_eq!((got.width, got.height), (96, 96));
    let img = decode(&got);
    assert_eq!(
        img.get_pixel(5, 50).0[3],
        0,
        "transparent stays transparent"
    );
    assert_eq!(img.get_pixel(90, 50).0[3], 255);
    // An alpha channel with every pixel opaque is a photo: JPEG.
    let opaque = image::RgbaImage::from_pixel(200, 100, image::Rgba([10, 200, 10, 255]));
    let mut png = std::io::Cursor::new(Vec::new());
    opaque
        .write_to(&mut png, image::ImageFormat::Png)
        .expect("png");
    let media = put_image(&server, &Bytes::from(png.into_inner())).await;
    let got = thumb(&server, &media.media_id, 96)
        .await
        .expect("thumbnail");
    assert_eq!(got.content_type, "image/jpeg");
}

async fn sizes_are_rounded_up(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let media = put_image(&server, &encode_image(ImageFormat::Png, 1000, 800)).await;
    for (asked, longer) in [
        (1, 96),
        (96, 96),
        (97, 320),
        (320, 320),
        (321, 640),
        (640, 640),
        (641, 640),
        (100_000, 640),
    ] {
        let got = thumb(&server, &media.media_id, asked)
            .await
            .expect("thumbnail");
        assert_eq!(got.width, longer, "max_edge {asked}");
        // 800/1000 of the width, rounded: 76.8 is 77.
        let height = (f64::from(longer) * 0.8).round() as u32;
        assert_eq!(got.height, height, "max_edge {asked}");
    }
    for bad in [0, -1, i32::MIN] {
        expect_code(
            thumb(&server, &media.media_id, bad).await,
            Code::InvalidArgument,
        );
    }
    expect_code(thumb(&server, "not-an-id", 96).await, Code::InvalidArgument);
    expect_code(
        thumb(&server, "00112233445566778899aabbccddeeff", 96).await,
        Code::NotFound,
    );
    // Three sizes, three stored thumbnails, however many requests.
    let sha = hex::encode(sha256(&encode_image(ImageFormat::Png, 1000, 800)));
    let thumbs: Vec<String> = server
        .stored()
        .await
        .into_iter()
        .filter(|k| k.starts_with("thumbs/"))
        .collect();
    assert_eq!(
        thumbs,
        vec![
            format!("thumbs/{sha}/320"),
            format!("thumbs/{sha}/640"),
            format!("thumbs/{sha}/96"),
        ]
    );
    // Smaller than the size: not enlarged.
    let small = put_image(&server, &encode_image(ImageFormat::Png, 50, 40)).await;
    let got = thumb(&server, &small.media_id, 640)
        .await
        .expect("thumbnail");
    assert_eq!((got.width, got.height), (50, 40));
}

/// A JPEG with over 1 MiB of metadata: an EXIF APP1 segment, then 20 more APP1
/// segments of 60,000 bytes.
fn jpeg_with_huge_exif() -> Bytes {
    let base = with_exif_orientation(&two_tone_jpeg(64, 64), 6);
    let mut out = base[..2].to_vec();
    let filler = vec![0x41u8; 60_000];
    for _ in 0..20 {
        out.extend_from_slice(&app_segment(0xe1, &filler));
    }
    out.extend_from_slice(&base[2..]);
    out.into()
}

/// A noisy PNG (so that it does not compress away) cut in half.
fn truncated_png() -> Bytes {
    let mut rng = StdRng::seed_from_u64(16);
    let img = image::RgbImage::from_fn(300, 300, |_, _| image::Rgb(rng.random()));
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)
        .expect("png");
    let png = png.into_inner();
    Bytes::copy_from_slice(&png[..png.len() / 2])
}

/// A noisy JPEG cut in half: the decoder would draw its top half and grey the rest.
fn truncated_jpeg() -> Bytes {
    let mut rng = StdRng::seed_from_u64(17);
    let img = image::RgbImage::from_fn(300, 300, |_, _| image::Rgb(rng.random()));
    let mut jpeg = std::io::Cursor::new(Vec::new());
    img.write_to(&mut jpeg, image::ImageFormat::Jpeg)
        .expect("jpeg");
    let jpeg = jpeg.into_inner();
    Bytes::copy_from_slice(&jpeg[..jpeg.len() / 2])
}

async fn hostile_images_refused_without_memory_jumping(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let hostile: [(&str, Bytes, &str); 6] = [
        (
            "a PNG declaring 100,000 x 100,000",
            png_declaring(100_000, 100_000),
            "IMAGE_REFUSED",
        ),
        // Within the side limit, 1 GiB decoded: refused by the memory budget.
        (
            "a PNG declaring 16,000 x 16,000",
            png_declaring(16_000, 16_000),
            "IMAGE_REFUSED",
        ),
        ("a truncated PNG", truncated_png(), "IMAGE_REFUSED"),
        ("a truncated JPEG", truncated_jpeg(), "IMAGE_REFUSED"),
        (
            "a JPEG with a huge EXIF block",
            jpeg_with_huge_exif(),
            "IMAGE_REFUSED",
        ),
        (
            "a text file",
            Bytes::from_static(b"just some words, no picture"),
            "NOT_AN_IMAGE",
        ),
    ];
    let mut ids = Vec::new();
    for (_, data, _) in &hostile {
        ids.push(put_image(&server, data).await.media_id);
    }
    // Warm up the server's code paths and allocator before the first reading.
    let warm = put_image(&server, &encode_image(ImageFormat::Png, 300, 300)).await;
    thumb(&server, &warm.media_id, 640)
        .await
        .expect("thumbnail");
    let before = rss_kib(server.pid());
    for _round in 0..3 {
        for ((what, _, expected), id) in hostile.iter().zip(&ids) {
            let status = thumb(&server, id, 640).await.expect_err(what);
            assert_eq!(
                status.code(),
                Code::FailedPrecondition,
                "{what}: {status:?}"
            );
            assert_eq!(reason(&status), *expected, "{what}");
            assert!(
                status.message().contains(id.as_str()),
                "{what}: {}",
                status.message()
            );
        }
    }
    let after = rss_kib(server.pid());
    // Decoding the 100,000 x 100,000 PNG would take 37 GiB, the 16,000 one 1 GiB.
    assert!(
        after < before + 64 * 1024,
        "the server's memory jumped from {before} KiB to {after} KiB"
    );
    assert!(server.metric("courier_thumbnails_refused_total").await >= 12);
    // Refusals store nothing.
    let thumbs = server
        .stored()
        .await
        .into_iter()
        .filter(|k| k.starts_with("thumbs/"))
        .count();
    assert_eq!(thumbs, 1, "only the warm-up thumbnail is stored");
}

async fn served_from_the_store_after_a_restart(backend: Backend) {
    let mut server = Server::start(&backend, &[]);
    let jpeg = with_exif_orientation(&two_tone_jpeg(600, 300), 6);
    let media = put_image(&server, &jpeg).await;
    let first = thumb(&server, &media.media_id, 320)
        .await
        .expect("thumbnail");
    assert_eq!(server.metric("courier_thumbnails_made_total").await, 1);
    let key = format!("thumbs/{}/320", hex::encode(sha256(&jpeg)));
    assert!(server.has(&key).await, "{key} is stored");
    let again = thumb(&server, &media.media_id, 300)
        .await
        .expect("thumbnail");
    assert_eq!(again, first);
    assert_eq!(server.metric("courier_thumbnails_made_total").await, 1);
    assert_eq!(
        server
            .metric("courier_thumbnails_served_stored_total")
            .await,
        1
    );
    server.restart(&[]);
    let after = thumb(&server, &media.media_id, 320)
        .await
        .expect("thumbnail");
    assert_eq!(after, first, "the stored thumbnail, as made");
    assert_eq!((after.width, after.height), (160, 320));
    assert_eq!(
        server.metric("courier_thumbnails_made_total").await,
        0,
        "nothing was decoded after the restart"
    );
    assert_eq!(
        server
            .metric("courier_thumbnails_served_stored_total")
            .await,
        1
    );
    // The same bytes uploaded again by someone else share the stored thumbnail.
    let mut client = server.media().await;
    let copy = upload_bytes(
        &mut client,
        &token("carol"),
        header(MediaKind::Image, "copy.jpg", jpeg.len() as u64),
        &jpeg,
    )
    .await
    .expect("upload");
    assert_eq!(
        thumb(&server, &copy.media_id, 320)
            .await
            .expect("thumbnail"),
        first
    );
    assert_eq!(server.metric("courier_thumbnails_made_total").await, 0);
}

async fn thumbnails_expire_with_their_media(backend: Backend) {
    let server = Server::start(
        &backend,
        &[
            "--media-ttl",
            "2s",
            "--sweep-interval",
            "200ms",
            "--content-grace",
            "200ms",
        ],
    );
    let data = encode_image(ImageFormat::Png, 300, 200);
    let media = put_image(&server, &data).await;
    thumb(&server, &media.media_id, 96)
        .await
        .expect("thumbnail");
    let key = format!("thumbs/{}/96", hex::encode(sha256(&data)));
    assert!(server.has(&key).await);
    // Once the media expires: NOT_FOUND, and the sweeper removes the thumbnail with
    // the content and the record.
    server.wait_stored(&[]).await;
    expect_code(thumb(&server, &media.media_id, 96).await, Code::NotFound);
}

async fn previous_layout_thumbnailed(backend: Backend) {
    let mut server = Server::start(&backend, &[]);
    let data = encode_image(ImageFormat::Png, 400, 100);
    let sha = hex::encode(sha256(&data));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let id = "00112233445566778899aabbccddeeff";
    // Exactly what the first layout wrote: no `layout` field, bytes under blobs/.
    let record = serde_json::json!({
        "media_id": id, "kind": "image", "file_name": "old.png",
        "size": data.len(), "sha256": sha,
        "content_type": "image/png", "width": 400, "height": 100,
        "owner": "alice", "created_ms": now_ms - 10_000, "expires_ms": now_ms + 6_000,
    });
    server
        .store
        .put(
            &Path::from(format!("blobs/{id}")),
            PutPayload::from(data.clone()),
        )
        .await
        .expect("put blob");
    server
        .store
        .put(
            &Path::from(format!("records/{id}.json")),
            PutPayload::from(serde_json::to_vec(&record).expect("json")),
        )
        .await
        .expect("put record");
    let got = thumb(&server, id, 96).await.expect("thumbnail");
    assert_eq!((got.width, got.height), (96, 24));
    decode(&got);
    assert!(server.has(&format!("thumbs/{sha}/96")).await);
    // Kept while the old record lives (a sweep now keeps it), gone when it expires.
    server.restart(&["--sweep-interval", "200ms", "--content-grace", "200ms"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        server.has(&format!("thumbs/{sha}/96")).await,
        "kept while live"
    );
    server.wait_stored(&[]).await;
}

async fn random_and_mutated_images_get_a_clear_status(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let mut rng = StdRng::seed_from_u64(0x16);
    let seeds: Vec<Bytes> = vec![
        encode_image(ImageFormat::Jpeg, 120, 80),
        with_exif_orientation(&two_tone_jpeg(90, 60), 6),
        encode_image(ImageFormat::Png, 120, 80),
        encode_image(ImageFormat::Gif, 120, 80),
        encode_image(ImageFormat::WebP, 120, 80),
        encode_image(ImageFormat::Bmp, 120, 80),
    ];
    let cases = 300;
    let deadline = Instant::now() + Duration::from_secs(240);
    let (mut made, mut refused) = (0, 0);
    for case in 0..cases {
        assert!(
            Instant::now() < deadline,
            "the fuzz run took over 4 minutes"
        );
        let data: Vec<u8> = match case % 3 {
            // Random bytes, sometimes behind a real signature.
            0 => {
                let mut bytes: Vec<u8> = (0..rng.random_range(1..4096))
                    .map(|_| rng.random())
                    .collect();
                let seed = &seeds[rng.random_range(0..seeds.len())];
                let keep = rng.random_range(0..16).min(bytes.len());
                bytes[..keep].copy_from_slice(&seed[..keep]);
                bytes
            }
            // A valid image with bytes flipped.
            1 => {
                let mut bytes = seeds[rng.random_range(0..seeds.len())].to_vec();
                for _ in 0..rng.random_range(1..12) {
                    let at = rng.random_range(0..bytes.len());
                    bytes[at] = rng.random();
                }
                bytes
            }
            // A valid image cut short.
            _ => {
                let seed = &seeds[rng.random_range(0..seeds.len())];
                seed[..rng.random_range(1..seed.len())].to_vec()
            }
        };
        let media = put_image(&server, &Bytes::from(data)).await;
        match thumb(&server, &media.media_id, 96).await {
            Ok(got) => {
                assert!(got.width <= 96 && got.height <= 96 && got.width > 0 && got.height > 0);
                decode(&got);
                made += 1;
            }
            Err(status) => {
                assert_eq!(
                    status.code(),
                    Code::FailedPrecondition,
                    "case {case}: {status:?}"
                );
                assert!(
                    ["IMAGE_REFUSED", "NOT_AN_IMAGE"].contains(&reason(&status).as_str()),
                    "case {case}: {status:?}"
                );
                assert!(!status.message().is_empty());
                refused += 1;
            }
        }
    }
    assert_eq!(made + refused, cases);
    assert!(refused > 0, "the fuzz cases were all valid images");
    // Still answering, and not holding more than the budget's worth of memory.
    let media = put_image(&server, &encode_image(ImageFormat::Png, 200, 200)).await;
    thumb(&server, &media.media_id, 96)
        .await
        .expect("still answers");
    let rss = rss_kib(server.pid());
    assert!(
        rss < 512 * 1024,
        "the server holds {rss} KiB after the fuzz run"
    );
}
