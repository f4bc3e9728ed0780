//! Plain HTTP links to stored media (GetMediaUrl), for loaders that speak HTTP: an
//! `<img>` tag, a platform image loader, a video player that seeks, a CDN.

use std::time::{Duration, SystemTime};

use crate::{client::Client, error::Error, media::system_time, pb};

/// What link [`Client::media_url`] asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaUrlOptions {
    /// 0 (the default) for the object itself; otherwise its thumbnail of at most this
    /// many pixels on the longer side, rounded up to 96, 320 or 640 as
    /// [`Client::thumbnail`] does.
    pub max_edge: u32,
    /// How long the link should work; `None`: the server's default (5 minutes). The
    /// server caps it (1 hour by default), and never lets it outlive the media or
    /// this client's token.
    pub lifetime: Option<Duration>,
}

/// A signed HTTP link to stored media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaUrl {
    /// The absolute URL. Whoever holds it can fetch the bytes, with no token, until
    /// `expires`; revoking the user ends it sooner.
    pub url: String,
    /// When the server stops answering it (HTTP 410 after).
    pub expires: SystemTime,
}

impl Client {
    /// A signed HTTP link to `media_id` (or its thumbnail), fetchable with any HTTP
    /// client: GET and HEAD, single byte ranges, ETag and `If-None-Match`. Errors:
    /// [`Error::InvalidArgument`] for a malformed ID, [`Error::NotFound`] for an
    /// unknown or expired one, [`Error::NotAnImage`] for a thumbnail of a file.
    pub async fn media_url(
        &self,
        media_id: &str,
        options: MediaUrlOptions,
    ) -> Result<MediaUrl, Error> {
        let max_edge = i32::try_from(options.max_edge).unwrap_or(i32::MAX);
        let lifetime = options.lifetime.map(|d| prost_types::Duration {
            seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nanos: d.subsec_nanos() as i32,
        });
        let response = self
            .retrying(|| async {
                let request = self.request(
                    pb::GetMediaUrlRequest {
                        media_id: media_id.to_owned(),
                        max_edge,
                        lifetime,
                    },
                    true,
                );
                Ok(self.media().get_media_url(request).await?.into_inner())
            })
            .await?;
        Ok(MediaUrl {
            url: response.url,
            expires: system_time(response.expire_time),
        })
    }
}
