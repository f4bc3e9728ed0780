//! Deleting one's own media.

use crate::{client::Client, error::Error, pb};

impl Client {
    /// Deletes `media_id`, one of the caller's own uploads: its ID then answers
    /// [`Error::MediaDeleted`] to downloads and lookups, and new messages naming it
    /// are refused ([`Error::MediaUnavailable`]); messages already sent still arrive.
    /// The server frees the caller's quota at once and removes the bytes once no
    /// other media names the same content. Deleting twice succeeds; another user's
    /// media, or an unknown or expired ID, is [`Error::NotFound`]. Retried like other
    /// calls that can be repeated safely.
    pub async fn delete_media(&self, media_id: &str) -> Result<(), Error> {
        self.retrying(|| async {
            let request = self.request(
                pb::DeleteMediaRequest {
                    media_id: media_id.to_owned(),
                },
                true,
            );
            self.media().delete_media(request).await?;
            Ok(())
        })
        .await
    }
}
