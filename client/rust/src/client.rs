//! The connection to a courier server: authentication on every call, deadlines on
//! unary calls, and retries with backoff where a call is safe to repeat.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tonic::{
    Request,
    metadata::{Ascii, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

use crate::{
    error::Error,
    pb::{
        media_service_client::MediaServiceClient, messaging_service_client::MessagingServiceClient,
    },
    request_id::RequestId,
    transfer::TransferTable,
};

/// How a [`Client`] behaves; the defaults suit most applications.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The deadline of each unary call.
    pub deadline: Duration,
    /// How many times a call that is safe to repeat is retried when the server is
    /// unavailable.
    pub retries: u32,
    /// The first pause before a retry; it doubles each time.
    pub backoff: Duration,
    /// The most uploads and downloads this client runs at once (the server allows 9
    /// per user).
    pub max_transfers: usize,
    /// The size of the data frames of an upload.
    pub chunk_size: usize,
    /// For `https://` servers: trust this CA (PEM) instead of the system's roots.
    pub tls_ca_pem: Option<Vec<u8>>,
    /// For `https://` servers that ask for one: this client certificate and its key
    /// (PEM each).
    pub tls_identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Size the HTTP/2 flow-control windows from the measured bandwidth-delay product
    /// (64 KiB up to 16 MiB) instead of the two fixed windows below. Off by default: on
    /// a fast link its small starting windows slowed downloads (BENCHMARKS.md), while
    /// the fixed windows already cover round trips of a few hundred milliseconds.
    pub adaptive_window: bool,
    /// The HTTP/2 flow-control window of one stream (what a download may have in
    /// flight), in bytes, when `adaptive_window` is off; it caps a download near
    /// window / round trip (16 MiB over 200 ms: ~80 MB/s) and is what the client may
    /// have to buffer.
    pub stream_window: u32,
    /// The HTTP/2 flow-control window of the connection, in bytes, when
    /// `adaptive_window` is off.
    pub connection_window: u32,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(10),
            retries: 4,
            backoff: Duration::from_millis(100),
            max_transfers: 9,
            chunk_size: 256 * 1024,
            tls_ca_pem: None,
            tls_identity: None,
            stream_window: 16 * 1024 * 1024,
            connection_window: 32 * 1024 * 1024,
            adaptive_window: false,
        }
    }
}

/// How long an address that was unavailable is passed over.
const DOWN_FOR: Duration = Duration::from_secs(30);

/// A connection to a courier server as one user. Cheap to clone; clones share the
/// connection and the transfer limit.
#[derive(Clone)]
pub struct Client {
    /// The shared connection, options and transfers.
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// One HTTP/2 connection per server address (each reconnects by itself); calls
    /// go to each in turn, passing over those recently unavailable.
    pub(crate) channels: Vec<Channel>,
    /// The turn: the next call goes to the connection after it.
    pub(crate) current: AtomicUsize,
    /// The connection the last call was given, which a failure is blamed on.
    pub(crate) last: AtomicUsize,
    /// Per connection: until when (milliseconds since `started`) it is passed over,
    /// after it was unavailable.
    pub(crate) down_until: Vec<AtomicU64>,
    /// The clock's origin.
    pub(crate) started: std::time::Instant,
    /// `Bearer <token>`.
    pub(crate) authorization: MetadataValue<Ascii>,
    /// Running transfers, by request ID.
    pub(crate) transfers: TransferTable,
    /// Deadlines, retries, limits.
    pub(crate) options: ClientOptions,
    /// The server addresses as given, the first naming the deployment (in the state
    /// files of resumable uploads).
    pub(crate) server_urls: Vec<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to `server_url` (`http://host:port`, or `https://` for TLS with the
    /// system's roots, or [`ClientOptions::tls_ca_pem`]) as the user named by `token`.
    pub async fn connect(server_url: &str, token: &str) -> Result<Self, Error> {
        Self::connect_with(server_url, token, ClientOptions::default()).await
    }

    /// [`Client::connect`] with options.
    pub async fn connect_with(
        server_url: &str,
        token: &str,
        options: ClientOptions,
    ) -> Result<Self, Error> {
        Self::connect_any_with(&[server_url], token, options).await
    }

    /// Connects to `server_urls`, replicas of one courier deployment, once the first
    /// that answers does; calls then go to each address in turn (round robin), so they
    /// spread over the replicas. When a server becomes unavailable (it died, or is
    /// restarting), calls that are safe to repeat and the live feed move on to the
    /// next address.
    pub async fn connect_any(server_urls: &[&str], token: &str) -> Result<Self, Error> {
        Self::connect_any_with(server_urls, token, ClientOptions::default()).await
    }

    /// [`Client::connect_any`] with options.
    pub async fn connect_any_with(
        server_urls: &[&str],
        token: &str,
        options: ClientOptions,
    ) -> Result<Self, Error> {
        if server_urls.is_empty() {
            return Err(Error::BadUrl("no server address given".into()));
        }
        let authorization = format!("Bearer {}", token.trim()).parse().map_err(|_| {
            Error::Unauthenticated("the token holds characters a header cannot carry".into())
        })?;
        let endpoints = server_urls
            .iter()
            .map(|url| endpoint(url, &options))
            .collect::<Result<Vec<_>, _>>()?;
        // The first address that answers becomes the current one; the others connect
        // when first used.
        let (first, connected) = retry(&options, || {
            let endpoints = endpoints.clone();
            async move {
                let mut last = None;
                for (i, endpoint) in endpoints.iter().enumerate() {
                    match endpoint.connect().await {
                        Ok(channel) => return Ok((i, channel)),
                        Err(e) => last = Some(Error::from(e)),
                    }
                }
                Err(last.unwrap_or_else(|| Error::BadUrl("no server address given".into())))
            }
        })
        .await?;
        let mut channels: Vec<Channel> = endpoints.iter().map(Endpoint::connect_lazy).collect();
        channels[first] = connected;
        Ok(Self {
            inner: Arc::new(Inner {
                channels,
                current: AtomicUsize::new(first),
                last: AtomicUsize::new(first),
                down_until: server_urls.iter().map(|_| AtomicU64::new(0)).collect(),
                started: std::time::Instant::now(),
                authorization,
                transfers: TransferTable::new(options.max_transfers),
                options,
                server_urls: server_urls.iter().map(|u| (*u).to_owned()).collect(),
            }),
        })
    }

    /// The connection the next call goes to: the addresses in turn, so that calls
    /// spread over every replica (round robin).
    pub(crate) fn channel(&self) -> Channel {
        let inner = &self.inner;
        let n = inner.channels.len();
        let now = inner.started.elapsed().as_millis() as u64;
        let mut i = inner.current.fetch_add(1, Ordering::Relaxed) % n;
        // Past the ones unavailable of late, unless every one is.
        for _ in 0..n {
            if inner.down_until[i].load(Ordering::Relaxed) <= now {
                break;
            }
            i = inner.current.fetch_add(1, Ordering::Relaxed) % n;
        }
        inner.last.store(i, Ordering::Relaxed);
        inner.channels[i].clone()
    }

    /// Passes over the address that just failed for a while ([`DOWN_FOR`]): calls,
    /// including those that cannot be repeated (uploads), go to the others.
    pub(crate) fn fail_over(&self) {
        let inner = &self.inner;
        if inner.channels.len() > 1 {
            let until = inner.started.elapsed().as_millis() as u64 + DOWN_FOR.as_millis() as u64;
            let i = inner.last.load(Ordering::Relaxed);
            inner.down_until[i].store(until, Ordering::Relaxed);
            inner.current.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The server's URL, as given to connect (the first, with several).
    pub fn server_url(&self) -> String {
        self.inner.server_urls.first().cloned().unwrap_or_default()
    }

    /// Cancels a running upload or download by its request ID; an unknown or finished
    /// one is [`Error::NoSuchTransfer`].
    pub fn cancel(&self, request_id: RequestId) -> Result<(), Error> {
        self.inner.transfers.cancel(request_id)
    }

    /// `message` with the token, and the unary deadline when `deadline` is set.
    pub(crate) fn request<T>(&self, message: T, deadline: bool) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.inner.authorization.clone());
        if deadline {
            request.set_timeout(self.inner.options.deadline);
        }
        request
    }

    pub(crate) fn media(&self) -> MediaServiceClient<Channel> {
        MediaServiceClient::new(self.channel()).max_decoding_message_size(8 * 1024 * 1024)
    }

    pub(crate) fn messaging(&self) -> MessagingServiceClient<Channel> {
        MessagingServiceClient::new(self.channel())
    }

    /// Runs `call` again, with backoff, while it fails with [`Error::Unavailable`]; only
    /// for calls that are safe to repeat.
    pub(crate) async fn retrying<T, F, Fut>(&self, mut call: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut failed = false;
        retry(&self.inner.options, || {
            // Each retry after an unavailable server goes to the next address.
            if std::mem::replace(&mut failed, true) {
                self.fail_over();
            }
            call()
        })
        .await
    }
}

async fn retry<T, F, Fut>(options: &ClientOptions, mut call: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut pause = options.backoff;
    let mut attempt = 0;
    loop {
        match call().await {
            Err(e) if e.is_retryable() && attempt < options.retries => {
                attempt += 1;
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// The endpoint of `server_url` with the client's settings: TLS for `https://`.
fn endpoint(server_url: &str, options: &ClientOptions) -> Result<Endpoint, Error> {
    let mut endpoint = Endpoint::from_shared(server_url.to_owned())
        .map_err(|e| Error::BadUrl(format!("{server_url}: {e}")))?
        .tcp_nodelay(true)
        .connect_timeout(options.deadline)
        .initial_stream_window_size(options.stream_window)
        .initial_connection_window_size(options.connection_window)
        .http2_adaptive_window(options.adaptive_window);
    if server_url.starts_with("https://") {
        let mut tls = match &options.tls_ca_pem {
            Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)),
            None => ClientTlsConfig::new().with_native_roots(),
        };
        if let Some((cert, key)) = &options.tls_identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| Error::BadUrl(format!("{server_url}: {e}")))?;
    }
    Ok(endpoint)
}
