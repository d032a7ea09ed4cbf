//! The bench's browser: hyper-util's legacy client (HTTP/1.1, keep-alive) over a connector that
//! opens each connection itself — TCP, then `CONNECT host:port` with `Proxy-Authorization` when
//! going through the gateway, then TLS (tokio-rustls, ring) trusting one CA — and times each step.

use anyhow::{bail, Context as _, Result};
use base64::Engine as _;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::client::TlsStream;

/// Longest a connection setup may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a proxy's CONNECT response head may be.
const MAX_CONNECT_RESPONSE: usize = 8 * 1024;

/// The times of one connection setup.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// TCP connect (to the origin or to the proxy).
    pub tcp: Duration,
    /// `CONNECT` request → `200` (zero without a proxy).
    pub connect: Duration,
    /// TLS handshake (with the origin or with the gateway).
    pub tls: Duration,
}

impl Setup {
    /// The whole setup.
    pub fn total(&self) -> Duration {
        self.tcp + self.connect + self.tls
    }
}

/// The proxy to tunnel through.
#[derive(Clone)]
pub struct Proxy {
    /// Its address.
    pub addr: SocketAddr,
    /// The `Proxy-Authorization` value.
    pub authorization: String,
}

impl Proxy {
    /// A proxy at `addr` signed in as `user` with `password` (Basic).
    pub fn new(addr: SocketAddr, user: &str, password: &str) -> Proxy {
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Proxy {
            addr,
            authorization: format!("Basic {credentials}"),
        }
    }
}

/// Opens connections for the client: directly or through a CONNECT tunnel, then TLS.
#[derive(Clone)]
pub struct Connector {
    proxy: Option<Proxy>,
    tls: tokio_rustls::TlsConnector,
    setups: Arc<Mutex<Vec<Setup>>>,
    /// One permit per connection the client may hold (see [`BenchClient`]).
    slot: Option<Arc<Semaphore>>,
}

/// A client that holds at most one connection, kept alive between requests.
///
/// hyper-util's pool hands a connection back to the pool from a spawned task once the
/// connection is idle again, and a request that finds no idle connection starts connecting at
/// once while it keeps waiting for one (the late connect then lands in the pool). Back-to-back
/// requests would open a stream of spare connections that way. A browser reuses its connection
/// instead, so here a connect waits until the client's connection is gone: the request gets the
/// connection back from the pool, and a connect still waiting when the client is dropped fails.
pub struct BenchClient<B = Empty<Bytes>> {
    /// The client.
    pub http: Client<Connector, B>,
    slot: Arc<Semaphore>,
}

impl<B> Drop for BenchClient<B> {
    fn drop(&mut self) {
        self.slot.close();
    }
}

impl Connector {
    /// A connector through `proxy` (none: directly) trusting only `ca` for TLS.
    pub fn new(proxy: Option<Proxy>, ca: CertificateDer<'static>) -> Result<Connector> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).context("adding the trusted CA")?;
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Connector {
            proxy,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            setups: Arc::new(Mutex::new(Vec::new())),
            slot: None,
        })
    }

    /// A keep-alive client with one connection over this connector: sequential requests reuse
    /// it, as a browser's do.
    pub fn client(&self) -> BenchClient {
        self.client_for()
    }

    /// Like [`Connector::client`], for requests with bodies of type `B`.
    pub fn client_for<B>(&self) -> BenchClient<B>
    where
        B: hyper::body::Body + Send,
        B::Data: Send,
    {
        let slot = Arc::new(Semaphore::new(1));
        let connector = Connector {
            slot: Some(slot.clone()),
            ..self.clone()
        };
        BenchClient {
            http: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(1)
                .pool_idle_timeout(Duration::from_secs(600))
                .build(connector),
            slot,
        }
    }

    /// Takes the setups recorded so far (every connection this connector or its clones opened).
    pub fn take_setups(&self) -> Vec<Setup> {
        std::mem::take(&mut *self.setups.lock().unwrap_or_else(|p| p.into_inner()))
    }

    async fn open(self, uri: Uri) -> Result<Stream> {
        let host = uri.host().context("a URL without host")?;
        let ip: IpAddr = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .with_context(|| format!("the bench connects to IP addresses only, not {host:?}"))?;
        let port = uri.port_u16().unwrap_or(443);
        let permit = match &self.slot {
            Some(slot) => Some(
                slot.clone()
                    .acquire_owned()
                    .await
                    .context("the client was dropped")?,
            ),
            None => None,
        };
        let t0 = Instant::now();
        let mut tcp = TcpStream::connect(
            self.proxy
                .as_ref()
                .map_or(SocketAddr::new(ip, port), |p| p.addr),
        )
        .await
        .context("TCP connect")?;
        tcp.set_nodelay(true)?;
        let t1 = Instant::now();
        if let Some(p) = &self.proxy {
            connect_tunnel(&mut tcp, &SocketAddr::new(ip, port).to_string(), p).await?;
        }
        let t2 = Instant::now();
        let tls = self
            .tls
            .connect(ServerName::IpAddress(ip.into()), tcp)
            .await
            .context("TLS handshake")?;
        let t3 = Instant::now();
        self.setups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Setup {
                tcp: t1 - t0,
                connect: t2 - t1,
                tls: t3 - t2,
            });
        Ok(Stream {
            io: TokioIo::new(tls),
            _permit: permit,
        })
    }
}

/// Sends `CONNECT authority` with the proxy's credentials and reads its response head.
async fn connect_tunnel(tcp: &mut TcpStream, authority: &str, proxy: &Proxy) -> Result<()> {
    let request = format!(
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nProxy-Authorization: {}\r\n\r\n",
        proxy.authorization
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    let end = loop {
        let n = tcp
            .read(&mut buf)
            .await
            .context("reading the CONNECT response")?;
        if n == 0 {
            bail!("the proxy closed the connection during CONNECT");
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > MAX_CONNECT_RESPONSE {
            bail!("the proxy's CONNECT response head is over {MAX_CONNECT_RESPONSE} bytes");
        }
    };
    let status_line =
        String::from_utf8_lossy(&head[..head.iter().position(|&b| b == b'\r').unwrap_or(0)])
            .into_owned();
    let status = status_line.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        bail!("CONNECT {authority} answered {status_line:?}");
    }
    if end != head.len() {
        bail!("the proxy sent data after its CONNECT response, before the TLS handshake");
    }
    Ok(())
}

impl tower_service::Service<Uri> for Connector {
    type Response = Stream;
    type Error = anyhow::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Stream>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let me = self.clone();
        Box::pin(async move {
            tokio::time::timeout(SETUP_TIMEOUT, me.open(uri))
                .await
                .context("connection setup timed out")?
        })
    }
}

/// A TLS connection as the client sees it.
pub struct Stream {
    io: TokioIo<TlsStream<TcpStream>>,
    /// The client's connection slot, free again when the connection is gone.
    _permit: Option<OwnedSemaphorePermit>,
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

/// A response as read in full.
pub struct Fetched {
    /// `Content-Type`.
    pub content_type: String,
    /// The body.
    pub body: Bytes,
}

/// `GET url`, checked for status 200; the whole body.
pub async fn get_body(client: &BenchClient, url: &Uri) -> Result<Fetched> {
    let res = client
        .http
        .get(url.clone())
        .await
        .with_context(|| format!("GET {url}"))?;
    if res.status() != hyper::StatusCode::OK {
        bail!("GET {url} answered {}", res.status());
    }
    let content_type = res
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = res
        .into_body()
        .collect()
        .await
        .with_context(|| format!("reading the body of {url}"))?
        .to_bytes();
    Ok(Fetched { content_type, body })
}

/// `GET url`, checked for status 200 and a body of `expected` bytes, read frame by frame (as a
/// browser streams a download) without keeping it.
pub async fn get_counted(client: &BenchClient, url: &Uri, expected: usize) -> Result<()> {
    let res = client
        .http
        .get(url.clone())
        .await
        .with_context(|| format!("GET {url}"))?;
    if res.status() != hyper::StatusCode::OK {
        bail!("GET {url} answered {}", res.status());
    }
    let mut body = res.into_body();
    let mut n = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.with_context(|| format!("reading the body of {url}"))?;
        if let Some(data) = frame.data_ref() {
            n += data.len();
        }
    }
    if n != expected {
        bail!("GET {url}: {n} bytes instead of {expected}");
    }
    Ok(())
}

/// `POST url` with `body` as `content_type`; the response status and body.
pub async fn post(
    client: &BenchClient<Full<Bytes>>,
    url: &Uri,
    content_type: &str,
    body: Bytes,
) -> Result<(hyper::StatusCode, Bytes)> {
    let req = hyper::Request::post(url.clone())
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(Full::new(body))
        .with_context(|| format!("building POST {url}"))?;
    let res = client
        .http
        .request(req)
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = res.status();
    let body = res
        .into_body()
        .collect()
        .await
        .with_context(|| format!("reading the response to POST {url}"))?
        .to_bytes();
    Ok((status, body))
}
