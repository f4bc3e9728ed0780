//! The Rust client's header-only re-upload: content this user stored before completes
//! without its bytes; anyone else's upload of it sends them.

use courier_client::Client;
use courier_testkit::{Backend, Server, pattern, sha256, token};

const MIB: usize = 1024 * 1024;

async fn client(server: &Server, user: &str) -> Client {
    Client::connect(&server.url(), &token(user))
        .await
        .expect("connects")
}

#[tokio::test]
async fn a_repeated_upload_does_not_resend() {
    let server = Server::start(&Backend::Local, &[]);
    let alice = client(&server, "alice").await;
    let bob = client(&server, "bob").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("movie.bin");
    let data = pattern(4 * MIB, 8);
    std::fs::write(&path, &data).expect("write");
    let received = || server.metric("courier_upload_bytes_total");

    let before = received().await;
    let first = alice
        .upload_file(&path)
        .expect("starts")
        .await
        .expect("uploads");
    assert_eq!(
        received().await - before,
        data.len() as i64,
        "the first upload sends"
    );

    // Alice again, from the file and from memory: no byte is sent, a new media ID.
    let before = received().await;
    let again = alice
        .upload_file(&path)
        .expect("starts")
        .await
        .expect("uploads");
    let from_memory = alice
        .upload_file_bytes("copy.bin", data.clone())
        .expect("starts")
        .await
        .expect("uploads");
    assert_eq!(received().await - before, 0, "a re-upload sends nothing");
    assert_ne!(again.media_id, first.media_id);
    assert_eq!(from_memory.file_name, "copy.bin");
    for media in [&again, &from_memory] {
        assert_eq!(media.sha256.to_vec(), sha256(&data));
        assert_eq!(media.size, data.len() as u64);
    }
    let downloaded = alice
        .download_to_memory(&again.media_id)
        .expect("starts")
        .await
        .expect("downloads");
    assert_eq!(downloaded.bytes.to_vec(), data.to_vec());

    // Bob's upload of the same content sends every byte.
    let before = received().await;
    let bobs = bob
        .upload_file(&path)
        .expect("starts")
        .await
        .expect("uploads");
    assert_eq!(
        received().await - before,
        data.len() as i64,
        "another user sends"
    );
    assert_eq!(bobs.sha256.to_vec(), sha256(&data));
}
