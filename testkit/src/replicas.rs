//! Three replicas of the server sharing one real nats-server (`--bus`) and one media
//! folder.

use crate::{Backend, Nats, Server};

/// Three replicas, each a [`Server`].
pub struct Replicas {
    servers: Vec<Server>,
    _nats: Nats,
    _media: tempfile::TempDir,
}

impl Replicas {
    /// Starts a nats-server and three replicas on it with `extra` arguments, or `None`
    /// without a nats-server on this machine.
    pub fn start(extra: &[&str]) -> Option<Self> {
        let nats = Nats::start()?;
        let media = tempfile::tempdir().expect("a shared media folder");
        let backend = Backend::shared(media.path());
        let url = nats.url();
        let mut args = vec!["--bus", url.as_str()];
        args.extend(extra);
        let servers = (0..3).map(|_| Server::start(&backend, &args)).collect();
        Some(Self {
            servers,
            _nats: nats,
            _media: media,
        })
    }

    /// Replica `n`, counted from 1.
    pub fn r(&self, n: usize) -> &Server {
        &self.servers[n - 1]
    }

    /// Replica `n`, to kill or restart.
    pub fn r_mut(&mut self, n: usize) -> &mut Server {
        &mut self.servers[n - 1]
    }

    /// The three replicas' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(Server::url).collect()
    }
}
