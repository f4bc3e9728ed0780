//! Waiting for a transfer: a progress bar on a terminal, and Ctrl-C cancels cleanly.

use std::{
    io::{IsTerminal, Read},
    path::Path,
};

use courier_client::{Error, Transfer};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

/// Awaits `transfer`, drawing progress on stderr when it is a terminal; Ctrl-C
/// cancels it (the server removes what was sent) and returns [`Error::Cancelled`].
pub async fn finish<T: Send + 'static>(mut transfer: Transfer<T>, label: &str) -> Result<T, Error> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(label.to_owned());
        bar
    });
    let mut progress = transfer.progress();
    let result = loop {
        tokio::select! {
            result = &mut transfer => break result,
            Some(p) = progress.next() => {
                if let Some(bar) = &bar {
                    bar.set_length(p.total);
                    bar.set_position(p.done);
                }
            }
            _ = tokio::signal::ctrl_c() => {
                transfer.cancel();
                break (&mut transfer).await;
            }
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    result
}

/// The SHA-256 (hex) of the bytes now on disk at `path`: what a `saved` line reports,
/// read back rather than taken from the record that the library checked them against.
pub fn sha256_of_file(path: &Path) -> Result<String, Error> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
