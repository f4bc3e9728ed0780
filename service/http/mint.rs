//! GetMediaUrl: mints a signed link to an object or one of its thumbnails, for a
//! caller who may download it, living no longer than the server allows, the media
//! lives, or the caller's token is valid.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Request, header, uri};

use crate::link::{Link, LinkKey, PREFIX};
use crate::{
    auth::{ExpiresAt, IssuedAt, UserId},
    error::Error,
    ids::MediaId,
    media::{MediaStore, Thumbnailer, thumbnail, thumbnail_size},
    pb,
};

/// The address a call came to (`host[:port]`), from its URI or `Host` header: a
/// request extension that the HTTP layer adds for GetMediaUrl.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority(pub String);

/// The authority of `request`: the URI's (HTTP/2's `:authority`), else `Host`.
pub fn authority_of<B>(request: &Request<B>) -> Option<Authority> {
    let text = match request.uri().authority() {
        Some(authority) => authority.as_str().to_owned(),
        None => request
            .headers()
            .get(header::HOST)?
            .to_str()
            .ok()?
            .to_owned(),
    };
    // Only a well-formed host[:port] becomes part of a link.
    let parsed: uri::Authority = text.parse().ok()?;
    (parsed.as_str().find('@').is_none()).then(|| Authority(parsed.as_str().to_owned()))
}

/// The lifetime rules and the base of links, from the command line.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    /// The lifetime of a request that names none.
    pub default_ttl: Duration,
    /// The longest lifetime; longer requests are cut to it.
    pub max_ttl: Duration,
    /// `--public-url`, without a trailing slash.
    pub public_url: Option<String>,
    /// Whether the server speaks TLS (`https://` links without `--public-url`).
    pub tls: bool,
}

/// Who asks for a link: what the authenticator put into the request.
#[derive(Debug, Clone)]
pub struct Minter {
    /// The caller.
    pub user: UserId,
    /// Its token's issue time.
    pub issued: IssuedAt,
    /// Its token's expiry.
    pub expires: ExpiresAt,
    /// Where the call came to.
    pub authority: Option<Authority>,
}

impl Minter {
    /// The minter of an authenticated gRPC request.
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Self, Error> {
        let extensions = request.extensions();
        Ok(Self {
            user: crate::auth::caller(request)?,
            issued: extensions
                .get::<IssuedAt>()
                .copied()
                .unwrap_or(IssuedAt(None)),
            expires: extensions
                .get::<ExpiresAt>()
                .copied()
                .ok_or_else(|| Error::Internal("a request without its token's expiry".into()))?,
            authority: extensions.get::<Authority>().cloned(),
        })
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The life asked for: unset or zero is the default, above the maximum the maximum,
/// negative refused; at least one second.
pub fn lifetime(
    asked: Option<&prost_types::Duration>,
    settings: &LinkSettings,
) -> Result<Duration, Error> {
    let asked = match asked {
        None => Duration::ZERO,
        Some(d) if d.seconds < 0 || d.nanos < 0 => {
            return Err(Error::invalid("lifetime must not be negative"));
        }
        Some(d) => Duration::new(d.seconds as u64, d.nanos.clamp(0, 999_999_999) as u32),
    };
    let chosen = if asked.is_zero() {
        settings.default_ttl
    } else {
        asked.min(settings.max_ttl)
    };
    Ok(chosen.max(Duration::from_secs(1)))
}

/// Mints the link of `request` for `minter`: the same checks as a download (the
/// media exists and has not expired), and for a thumbnail that one can be made (it is
/// made now, so the first fetch is quick).
pub async fn mint(
    media: &MediaStore,
    thumbnailer: &Thumbnailer,
    key: &LinkKey,
    settings: &LinkSettings,
    minter: &Minter,
    request: pb::GetMediaUrlRequest,
) -> Result<pb::GetMediaUrlResponse, Error> {
    let id = MediaId::parse(&request.media_id)?;
    if request.max_edge < 0 {
        return Err(Error::invalid(format!(
            "max_edge must be 0 (the object itself) or a size in pixels, not {}",
            request.max_edge
        )));
    }
    let life = lifetime(request.lifetime.as_ref(), settings)?;
    let record = media.get(&id).await?;
    let edge = if request.max_edge == 0 {
        0
    } else {
        thumbnail(media, thumbnailer, &id, request.max_edge).await?;
        thumbnail_size(request.max_edge)?
    };
    let now = now_secs();
    let exp = (now + life.as_secs_f64().ceil() as u64)
        .min(record.expires_ms / 1000)
        .min(minter.expires.0);
    if exp <= now {
        return Err(Error::NotFound(format!("media {id} has expired")));
    }
    let base = match (&settings.public_url, &minter.authority) {
        (Some(base), _) => base.clone(),
        (None, Some(authority)) => {
            let scheme = if settings.tls { "https" } else { "http" };
            format!("{scheme}://{}", authority.0)
        }
        (None, None) => {
            return Err(Error::FailedPrecondition(
                "the call named no host to build the link from; the operator can set --public-url"
                    .into(),
            ));
        }
    };
    let link = Link {
        media_id: id,
        edge,
        exp,
        user: minter.user.0.clone(),
        iat: minter.issued.0.unwrap_or(0),
    };
    Ok(pb::GetMediaUrlResponse {
        url: format!("{base}{PREFIX}{}?{}", link.media_id, key.query(&link)),
        expire_time: Some(prost_types::Timestamp {
            seconds: exp as i64,
            nanos: 0,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LinkSettings {
        LinkSettings {
            default_ttl: Duration::from_secs(300),
            max_ttl: Duration::from_secs(3600),
            public_url: None,
            tls: false,
        }
    }

    #[test]
    fn lifetimes_are_defaulted_and_capped() {
        let d = |seconds, nanos| prost_types::Duration { seconds, nanos };
        let s = settings();
        assert_eq!(lifetime(None, &s).ok(), Some(Duration::from_secs(300)));
        assert_eq!(
            lifetime(Some(&d(0, 0)), &s).ok(),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            lifetime(Some(&d(60, 0)), &s).ok(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            lifetime(Some(&d(7200, 0)), &s).ok(),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            lifetime(Some(&d(0, 5)), &s).ok(),
            Some(Duration::from_secs(1))
        );
        assert!(lifetime(Some(&d(-1, 0)), &s).is_err());
    }

    #[test]
    fn authorities_come_from_the_uri_or_host() {
        let request = Request::builder()
            .uri("http://example.com:8080/x")
            .body(())
            .unwrap_or_default();
        assert_eq!(
            authority_of(&request),
            Some(Authority("example.com:8080".into()))
        );
        let request = Request::builder()
            .uri("/x")
            .header("host", "a.example")
            .body(())
            .unwrap_or_default();
        assert_eq!(authority_of(&request), Some(Authority("a.example".into())));
        let request = Request::builder()
            .uri("/x")
            .header("host", "a b")
            .body(())
            .unwrap_or_default();
        assert_eq!(authority_of(&request), None);
    }
}
