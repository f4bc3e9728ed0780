//! The connection to a courier server: authentication on every call, deadlines on
//! unary calls, and retries with backoff where a call is safe to repeat.

use std::{future::Future, sync::Arc, time::Duration};

use tonic::{
    Request,
    metadata::{Ascii, MetadataValue},
    transport::{Channel, ClientTlsConfig, Endpoint},
};

use crate::{
    error::Error,
    pb::{
        media_service_client::MediaServiceClient, messaging_service_client::MessagingServiceClient,
    },
    transfer::{RequestId, TransferTable},
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
            stream_window: 16 * 1024 * 1024,
            connection_window: 32 * 1024 * 1024,
            adaptive_window: false,
        }
    }
}

/// A connection to a courier server as one user. Cheap to clone; clones share the
/// connection and the transfer limit.
#[derive(Clone)]
pub struct Client {
    /// The shared connection, options and transfers.
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The HTTP/2 connection (reconnects by itself).
    pub(crate) channel: Channel,
    /// `Bearer <token>`.
    pub(crate) authorization: MetadataValue<Ascii>,
    /// Running transfers, by request ID.
    pub(crate) transfers: TransferTable,
    /// Deadlines, retries, limits.
    pub(crate) options: ClientOptions,
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
    /// system's roots) as the user named by `token`.
    pub async fn connect(server_url: &str, token: &str) -> Result<Self, Error> {
        Self::connect_with(server_url, token, ClientOptions::default()).await
    }

    /// [`Client::connect`] with options.
    pub async fn connect_with(
        server_url: &str,
        token: &str,
        options: ClientOptions,
    ) -> Result<Self, Error> {
        let authorization = format!("Bearer {}", token.trim()).parse().map_err(|_| {
            Error::Unauthenticated("the token holds characters a header cannot carry".into())
        })?;
        let mut endpoint = Endpoint::from_shared(server_url.to_owned())
            .map_err(|e| Error::BadUrl(format!("{server_url}: {e}")))?
            .tcp_nodelay(true)
            .connect_timeout(options.deadline)
            .initial_stream_window_size(options.stream_window)
            .initial_connection_window_size(options.connection_window)
            .http2_adaptive_window(options.adaptive_window);
        if server_url.starts_with("https://") {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_native_roots())
                .map_err(|e| Error::BadUrl(format!("{server_url}: {e}")))?;
        }
        let channel = retry(&options, || {
            let endpoint = endpoint.clone();
            async move { endpoint.connect().await.map_err(Error::from) }
        })
        .await?;
        Ok(Self {
            inner: Arc::new(Inner {
                channel,
                authorization,
                transfers: TransferTable::new(options.max_transfers),
                options,
            }),
        })
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
        MediaServiceClient::new(self.inner.channel.clone())
            .max_decoding_message_size(8 * 1024 * 1024)
    }

    pub(crate) fn messaging(&self) -> MessagingServiceClient<Channel> {
        MessagingServiceClient::new(self.inner.channel.clone())
    }

    /// Runs `call` again, with backoff, while it fails with [`Error::Unavailable`]; only
    /// for calls that are safe to repeat.
    pub(crate) async fn retrying<T, F, Fut>(&self, call: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        retry(&self.inner.options, call).await
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
