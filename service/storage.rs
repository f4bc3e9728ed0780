//! Opens the object store that holds media: a local folder by default, or any
//! S3-compatible store for an `s3://bucket/prefix` URL, configured by the standard
//! AWS_* variables (AWS_ENDPOINT, AWS_ALLOW_HTTP, AWS_ACCESS_KEY_ID,
//! AWS_SECRET_ACCESS_KEY, AWS_REGION).

use std::{
    fs, io,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use object_store::{
    BackoffConfig, ObjectStore, RetryConfig, aws::AmazonS3Builder, local::LocalFileSystem,
    multipart::MultipartStore, prefix::PrefixStore, signer::Signer,
};

use crate::error::Error;

/// Where media live, as parsed from `--storage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A folder on this machine.
    Local(PathBuf),
    /// A bucket and key prefix (possibly empty) in an S3-compatible store.
    S3 {
        /// The bucket name.
        bucket: String,
        /// The key prefix, without leading or trailing slashes.
        prefix: String,
    },
}

impl Location {
    /// Parses `--storage`; none means `<data_dir>/media`.
    pub fn parse(storage: Option<&str>, data_dir: &Path) -> Result<Self, Error> {
        let Some(text) = storage.filter(|s| !s.is_empty()) else {
            return Ok(Self::Local(data_dir.join("media")));
        };
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::invalid(format!(
                    "--storage {text}: the bucket name is missing"
                )));
            }
            return Ok(Self::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        if text.contains("://") && !text.starts_with("file://") {
            return Err(Error::invalid(format!(
                "--storage {text}: use a folder path or s3://bucket/prefix"
            )));
        }
        Ok(Self::Local(PathBuf::from(
            text.trim_start_matches("file://"),
        )))
    }
}

impl Location {
    /// How many bytes an upload buffers before writing a part: S3 needs parts of at
    /// least 5 MiB; a local folder takes any size, so it buffers less.
    pub fn part_size(&self) -> usize {
        match self {
            Self::Local(_) => 1024 * 1024,
            Self::S3 { .. } => 5 * 1024 * 1024,
        }
    }
}

/// Opens the store at `location`, creating a local folder if needed.
pub fn open(location: &Location) -> Result<Arc<dyn ObjectStore>, Error> {
    Ok(open_with_parts(location)?.0)
}

/// The low-level multipart API of an S3 store.
pub type MultipartApi = Arc<dyn MultipartStore>;

/// Opens the store at `location` and, for S3, the same store's low-level multipart
/// API, through which resumable uploads keep each part as an S3 part (see
/// `media/resumable.rs`); a local folder has none.
pub fn open_with_parts(
    location: &Location,
) -> Result<(Arc<dyn ObjectStore>, Option<MultipartApi>), Error> {
    match location {
        Location::Local(dir) => {
            fs::create_dir_all(dir).map_err(|e| {
                Error::Internal(format!("creating the media folder {}: {e}", dir.display()))
            })?;
            remove_staged_uploads(dir);
            Ok((Arc::new(LocalFileSystem::new_with_prefix(dir)?), None))
        }
        Location::S3 { bucket, prefix } => {
            let s3 = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(s3_retries())
                .build()?;
            if prefix.is_empty() {
                let s3 = Arc::new(s3);
                Ok((s3.clone(), Some(s3)))
            } else {
                let s3 = Arc::new(PrefixStore::new(s3, prefix.as_str()));
                Ok((s3.clone(), Some(s3)))
            }
        }
    }
}

/// With S3: a signer of presigned URLs for the store at `location` (prefix
/// included); a local folder has none.
pub fn signer(location: &Location) -> Result<Option<Arc<dyn Signer>>, Error> {
    match location {
        Location::Local(_) => Ok(None),
        Location::S3 { bucket, prefix } => {
            let s3 = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(s3_retries())
                .build()?;
            if prefix.is_empty() {
                Ok(Some(Arc::new(s3)))
            } else {
                Ok(Some(Arc::new(PrefixStore::new(s3, prefix.as_str()))))
            }
        }
    }
}

/// How an S3 request is retried: a few times within seconds, so that a blip is
/// absorbed but an unreachable store fails the call (UNAVAILABLE) while its client
/// still waits, instead of after object_store's default of up to 10 retries over 3
/// minutes.
fn s3_retries() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 4,
        retry_timeout: Duration::from_secs(15),
    }
}

/// Deletes the staging files (`name#N`) that a crashed process left behind in a local
/// store; object_store writes uploads to them and renames them into place on success.
fn remove_staged_uploads(dir: &Path) {
    if let Err(e) = remove_staged_in(dir) {
        tracing::warn!(error = %e, "could not clean up staged uploads");
    }
}

fn remove_staged_in(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            remove_staged_in(&entry.path())?;
        } else if entry.file_name().to_string_lossy().contains('#') {
            tracing::info!(path = %entry.path().display(), "removing a crashed upload's data");
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        let data = Path::new("/d");
        assert_eq!(
            Location::parse(None, data).ok(),
            Some(Location::Local("/d/media".into()))
        );
        assert_eq!(
            Location::parse(Some("s3://b/p/q/"), data).ok(),
            Some(Location::S3 {
                bucket: "b".into(),
                prefix: "p/q".into()
            })
        );
        assert_eq!(
            Location::parse(Some("s3://b"), data).ok(),
            Some(Location::S3 {
                bucket: "b".into(),
                prefix: String::new()
            })
        );
        assert!(Location::parse(Some("s3://"), data).is_err());
        assert!(Location::parse(Some("gs://x"), data).is_err());
    }
}
