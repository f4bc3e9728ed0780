//! The AdminService (`proto/courier/admin/v1`): the admin actions of `actions.rs` over
//! gRPC, served only on `--admin-listen` (off by default) with its own health and
//! reflection, never on the users' port. Every call needs `authorization: Bearer
//! <admin secret>`; user tokens are refused whatever their claims.

use std::{future::Future, time::Duration};

use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, service::Interceptor, transport::Server};

use super::actions::{self, Deleted, Listed, Target};
use crate::{
    error::Error,
    media::{MediaKind, MediaStore, VerdictState, now_millis, timestamp},
    pb::{
        self,
        admin::{
            self as apb,
            admin_service_server::{AdminService, AdminServiceServer},
        },
    },
};

/// The fewest characters an admin secret has.
pub const MIN_SECRET_LEN: usize = 32;

/// Checks an admin secret given on the command line.
pub fn check_secret(secret: Option<&str>) -> Result<String, Error> {
    match secret {
        None | Some("") => Err(Error::invalid(
            "--admin-listen needs --admin-secret (COURIER_ADMIN_SECRET): the AdminService takes no user tokens",
        )),
        Some(s) if s.chars().count() < MIN_SECRET_LEN => Err(Error::invalid(format!(
            "the admin secret must be at least {MIN_SECRET_LEN} characters"
        ))),
        Some(s) => Ok(s.to_owned()),
    }
}

/// The media store `serve` uses, for the AdminService: a local folder is made if it
/// is not there yet (the server makes it too).
pub fn open_store(storage: Option<&str>, data_dir: &std::path::Path) -> Result<MediaStore, Error> {
    if let crate::storage::Location::Local(dir) =
        crate::storage::Location::parse(storage, data_dir)?
    {
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Internal(format!("making {}: {e}", dir.display())))?;
    }
    super::open(storage, data_dir)
}

/// Serves the AdminService on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    media: MediaStore,
    secret: String,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<AdminServiceServer<AdminServer>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::ADMIN_FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Internal(format!("building the admin reflection: {e}")))?;
    let service = AdminServiceServer::with_interceptor(
        AdminServer { media },
        AdminSecret(Sha256::digest(secret.as_bytes()).into()),
    );
    Server::builder()
        .timeout(Duration::from_secs(300))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
        .map_err(|e| Error::Internal(format!("the admin gRPC server failed: {e}")))
}

/// The admin secret's SHA-256: a call's bearer is compared by digest, so that the
/// comparison's time tells nothing of the secret.
#[derive(Clone)]
struct AdminSecret([u8; 32]);

impl Interceptor for AdminSecret {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let bearer = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match bearer {
            Some(given) if <[u8; 32]>::from(Sha256::digest(given.as_bytes())) == self.0 => {
                Ok(request)
            }
            Some(_) => {
                tracing::warn!(target: "courier::admin", "an AdminService call with a wrong secret");
                Err(Status::unauthenticated(
                    "not the admin secret: the AdminService takes only `authorization: Bearer <admin secret>`, never a user token",
                ))
            }
            None => Err(Status::unauthenticated(
                "the AdminService needs the metadata `authorization: Bearer <admin secret>`",
            )),
        }
    }
}

/// The AdminService over the media store.
struct AdminServer {
    media: MediaStore,
}

fn admin_media(listed: Listed, now: u64) -> apb::AdminMedia {
    let record = listed.record;
    apb::AdminMedia {
        expired: record.is_expired(now),
        quarantined: listed.quarantined,
        kind: match record.kind {
            MediaKind::Image => pb::MediaKind::Image,
            MediaKind::File => pb::MediaKind::File,
        } as i32,
        create_time: Some(timestamp(record.created_ms)),
        expire_time: Some(timestamp(record.expires_ms)),
        media_id: record.media_id,
        owner: record.owner,
        file_name: record.file_name,
        size: record.size,
        sha256: record.sha256,
        content_type: record.content_type,
        width: record.width,
        height: record.height,
    }
}

/// The action's target of a request's `target`.
fn target(target: Option<&apb::MediaTarget>) -> Result<Target, Error> {
    use apb::media_target::Target as T;
    match target.and_then(|t| t.target.as_ref()) {
        Some(T::MediaId(id)) => Target::of(Some(id), None),
        Some(T::Sha256(sha256)) => Target::of(None, Some(sha256)),
        None => Target::of(None, None),
    }
}

#[tonic::async_trait]
impl AdminService for AdminServer {
    async fn list_media(
        &self,
        request: Request<apb::ListMediaRequest>,
    ) -> Result<Response<apb::ListMediaResponse>, Status> {
        let user = request.into_inner().user_id;
        if user.is_empty() {
            return Err(Error::invalid("user_id is empty: whose media?").into());
        }
        let now = now_millis();
        let media = actions::list(&self.media, &user, "grpc")
            .await?
            .into_iter()
            .map(|listed| admin_media(listed, now))
            .collect();
        Ok(Response::new(apb::ListMediaResponse { media }))
    }

    async fn delete_media(
        &self,
        request: Request<apb::DeleteMediaRequest>,
    ) -> Result<Response<apb::DeleteMediaResponse>, Status> {
        let target = target(request.get_ref().target.as_ref())?;
        let deleted_media_ids = match actions::delete(&self.media, target, "grpc").await? {
            Deleted::Content { media_ids, .. } => media_ids,
            Deleted::Media(record) => vec![record.media_id],
            Deleted::Already(id) => vec![id.to_string()],
        };
        Ok(Response::new(apb::DeleteMediaResponse {
            deleted_media_ids,
        }))
    }

    async fn quarantine_content(
        &self,
        request: Request<apb::QuarantineContentRequest>,
    ) -> Result<Response<apb::QuarantineContentResponse>, Status> {
        let target = target(request.get_ref().target.as_ref())?;
        let sha256 =
            actions::set_verdict(&self.media, target, VerdictState::Quarantined, "grpc").await?;
        Ok(Response::new(apb::QuarantineContentResponse { sha256 }))
    }

    async fn release_content(
        &self,
        request: Request<apb::ReleaseContentRequest>,
    ) -> Result<Response<apb::ReleaseContentResponse>, Status> {
        let target = target(request.get_ref().target.as_ref())?;
        let sha256 =
            actions::set_verdict(&self.media, target, VerdictState::Accepted, "grpc").await?;
        Ok(Response::new(apb::ReleaseContentResponse { sha256 }))
    }
}
