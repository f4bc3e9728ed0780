//! The operator's AdminService (`--admin-listen`, `--admin-secret`), black-box: a real
//! server process with the service on a listener of its own, called over real gRPC.
//! It takes only the admin secret (never a user token), and lists, quarantines,
//! releases and deletes as `courier-server media` does, on a folder and on S3.

#[macro_use]
mod common;

use std::process::Command;

use common::{
    Backend, Server, authed, download, header, png, refusal, sha256, token, upload_bytes,
};
use courier_server::pb::{
    MediaKind,
    admin::{self, admin_service_client::AdminServiceClient, media_target::Target},
};
use tonic::{Code, Status, transport::Channel};

/// The admin secret the tests start servers with.
const ADMIN_SECRET: &str = "admin-secret-for-the-tests-0123456789";

/// Starts a server with the AdminService on a free port of its own; returns the
/// server and the admin address.
fn start(backend: &Backend) -> (Server, String) {
    let server = Server::start(
        backend,
        &[
            "--admin-listen",
            "127.0.0.1:0",
            "--admin-secret",
            ADMIN_SECRET,
        ],
    );
    let line = server
        .log_lines()
        .into_iter()
        .find(|l| l.contains("admin service listening"))
        .expect("the admin service's listening line");
    let log: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    let addr = log["admin_listen"]
        .as_str()
        .expect("the admin address")
        .to_owned();
    (server, format!("http://{addr}"))
}

async fn client(addr: &str) -> AdminServiceClient<Channel> {
    AdminServiceClient::connect(addr.to_owned())
        .await
        .expect("connects to the admin listener")
}

/// A request's target.
fn target(target: Target) -> Option<admin::MediaTarget> {
    Some(admin::MediaTarget {
        target: Some(target),
    })
}

/// DeleteMedia of `target` with the admin secret.
async fn delete(
    admin: &mut AdminServiceClient<Channel>,
    target: Target,
) -> Result<admin::DeleteMediaResponse, Status> {
    let request = admin::DeleteMediaRequest {
        target: self::target(target),
    };
    Ok(admin
        .delete_media(bearer(ADMIN_SECRET, request))
        .await?
        .into_inner())
}

fn bearer<T>(secret: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {secret}").parse().expect("metadata"),
    );
    request
}

async fn admin_service_lists_quarantines_releases_and_deletes(backend: Backend) {
    let (server, addr) = start(&backend);
    let data = png(40, 30);
    let mut media = server.media().await;
    let uploaded = upload_bytes(
        &mut media,
        &token("alice"),
        header(MediaKind::Image, "cat.png", data.len() as u64),
        &data,
    )
    .await
    .expect("uploads");
    let id = uploaded.media_id.clone();
    let mut admin = client(&addr).await;

    // Only the admin secret opens it: no metadata, a wrong secret, a user's token.
    let list = || admin::ListMediaRequest {
        user_id: "alice".into(),
    };
    let status = admin.list_media(list()).await.expect_err("no secret");
    assert_eq!(status.code(), Code::Unauthenticated);
    let wrong = format!("{ADMIN_SECRET}x");
    let status = admin
        .list_media(bearer(&wrong, list()))
        .await
        .expect_err("a wrong secret");
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = admin
        .list_media(authed(&token("alice"), list()))
        .await
        .expect_err("a user token");
    assert_eq!(status.code(), Code::Unauthenticated);
    // Nor is the service on the users' port.
    let mut on_users_port = client(&server.url()).await;
    let status = on_users_port
        .list_media(bearer(ADMIN_SECRET, list()))
        .await
        .expect_err("not on the users' port");
    assert_eq!(status.code(), Code::Unimplemented);

    let listed = admin
        .list_media(bearer(ADMIN_SECRET, list()))
        .await
        .expect("lists")
        .into_inner()
        .media;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].media_id, id);
    assert_eq!(listed[0].owner, "alice");
    assert_eq!(listed[0].kind, MediaKind::Image as i32);
    assert_eq!(listed[0].sha256, hex::encode(sha256(&data)));
    assert_eq!((listed[0].width, listed[0].height), (40, 30));
    assert!(!listed[0].quarantined && !listed[0].expired);

    let quarantined = admin
        .quarantine_content(bearer(
            ADMIN_SECRET,
            admin::QuarantineContentRequest {
                target: target(Target::MediaId(id.clone())),
            },
        ))
        .await
        .expect("quarantines")
        .into_inner();
    assert_eq!(quarantined.sha256, hex::encode(sha256(&data)));
    let fetched = download(&mut media, &token("bob"), &id, 0, 0).await;
    assert_eq!(
        refusal(fetched),
        (Code::FailedPrecondition, "MEDIA_QUARANTINED".into())
    );
    let listed = admin
        .list_media(bearer(ADMIN_SECRET, list()))
        .await
        .expect("lists")
        .into_inner()
        .media;
    assert!(listed[0].quarantined);

    admin
        .release_content(bearer(
            ADMIN_SECRET,
            admin::ReleaseContentRequest {
                target: target(Target::Sha256(quarantined.sha256.to_uppercase())),
            },
        ))
        .await
        .expect("releases by SHA-256");
    let (_, bytes) = download(&mut media, &token("bob"), &id, 0, 0)
        .await
        .expect("downloadable again");
    assert_eq!(bytes, data.to_vec());

    let bad = delete(&mut admin, Target::Sha256("abc".into())).await;
    assert_eq!(refusal(bad).0, Code::InvalidArgument);
    let unknown = delete(
        &mut admin,
        Target::MediaId("0123456789abcdef0123456789abcdef".into()),
    )
    .await;
    assert_eq!(refusal(unknown).0, Code::NotFound);
    let deleted = delete(&mut admin, Target::Sha256(quarantined.sha256.clone()))
        .await
        .expect("deletes every media of the content");
    assert_eq!(deleted.deleted_media_ids, vec![id.clone()]);
    let fetched = download(&mut media, &token("bob"), &id, 0, 0).await;
    assert_eq!(refusal(fetched), (Code::NotFound, "MEDIA_DELETED".into()));

    // Every call was logged, with the way it came.
    let logged: Vec<serde_json::Value> = server
        .log_lines()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["target"] == "courier::admin" && v["via"] == "grpc")
        .collect();
    let actions: Vec<&str> = logged.iter().filter_map(|v| v["action"].as_str()).collect();
    for action in ["list", "quarantined", "released", "delete"] {
        assert!(
            actions.contains(&action),
            "{action} not logged: {actions:?}"
        );
    }
}

on_every_backend!(admin_service_lists_quarantines_releases_and_deletes);

/// `--admin-listen` without a secret of its own, or with a short one, does not start.
#[test]
fn the_admin_listener_needs_a_secret_of_its_own() {
    let dir = tempfile::tempdir().expect("a data folder");
    for extra in [
        &["--admin-listen", "127.0.0.1:0"][..],
        &["--admin-listen", "127.0.0.1:0", "--admin-secret", "short"][..],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_courier-server"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .args(extra)
            .env_remove("COURIER_ADMIN_SECRET")
            .output()
            .expect("runs courier-server");
        assert!(!output.status.success(), "started with {extra:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("admin secret") || stderr.contains("--admin-secret"),
            "{stderr}"
        );
    }
}
