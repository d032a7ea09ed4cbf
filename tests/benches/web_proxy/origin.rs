//! The HTTPS origin every path ends at: hyper 1 (HTTP/1.1, keep-alive) over tokio-rustls with a
//! leaf for 127.0.0.1 and 127.0.0.2 from a throw-away CA, listening on both addresses. It serves
//! `GET /small` (200 bytes, text/plain), `GET /page` (50 KiB of HTML) and `GET /big` (4 MiB,
//! application/octet-stream), and counts the connections and requests it serves per address.

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Size of `/small`.
pub const SMALL_BYTES: usize = 200;
/// Size of `/page`.
pub const PAGE_BYTES: usize = 50 * 1024;
/// Size of `/big`.
pub const BIG_BYTES: usize = 4 * 1024 * 1024;

/// The intercepted host (the web target's domain).
pub const RECORDED_HOST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// The host under the `tunnel` rule.
pub const TUNNELLED_HOST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// One served resource.
pub struct Resource {
    /// Request path.
    pub path: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Bytes,
}

/// The three resources.
pub struct Content {
    /// `/small`.
    pub small: Resource,
    /// `/page`.
    pub page: Resource,
    /// `/big`.
    pub big: Resource,
}

impl Content {
    /// Builds the bodies (the big one is pseudo-random, so nothing on the way can compress it).
    pub fn new() -> Content {
        let mut small = b"psmgate web proxy bench: small response ".repeat(SMALL_BYTES / 40 + 1);
        small.truncate(SMALL_BYTES);
        Content {
            small: Resource {
                path: "/small",
                content_type: "text/plain; charset=utf-8",
                body: Bytes::from(small),
            },
            page: Resource {
                path: "/page",
                content_type: "text/html; charset=utf-8",
                body: Bytes::from(html_page(PAGE_BYTES)),
            },
            big: Resource {
                path: "/big",
                content_type: "application/octet-stream",
                body: Bytes::from(noise(BIG_BYTES)),
            },
        }
    }

    fn get(&self, path: &str) -> Option<&Resource> {
        [&self.small, &self.page, &self.big]
            .into_iter()
            .find(|r| r.path == path)
    }
}

/// A console-like HTML page of exactly `size` bytes.
fn html_page(size: usize) -> Vec<u8> {
    let head = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Instances</title>\
                <link rel=\"stylesheet\" href=\"/static/app.css\"></head>\n<body><main><table>\n";
    let tail = "</table></main></body></html>\n";
    let mut out = String::from(head);
    let mut i = 0u32;
    while out.len() + tail.len() < size {
        out.push_str(&format!(
            "<tr class=\"row\"><td>i-{i:08x}</td><td>running</td><td>t3.medium</td>\
             <td>eu-west-1{}</td><td><a href=\"/instances/{i}\">details</a></td></tr>\n",
            ["a", "b", "c"][i as usize % 3]
        ));
        i += 1;
    }
    out.truncate(size - tail.len());
    out.push_str(tail);
    out.into_bytes()
}

/// `n` pseudo-random bytes (xorshift64*, fixed seed).
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(n);
    out
}

/// What one listening address served.
#[derive(Default)]
pub struct Served {
    /// TLS connections accepted.
    pub connections: AtomicU64,
    /// Requests answered.
    pub requests: AtomicU64,
}

impl Served {
    /// (connections, requests) so far.
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.connections.load(Ordering::Relaxed),
            self.requests.load(Ordering::Relaxed),
        )
    }
}

/// The running origin (its tasks live on the current tokio runtime).
pub struct Origin {
    /// The throw-away CA's certificate, PEM (what clients and the gateway trust).
    pub ca_pem: String,
    /// The CA's certificate.
    pub ca_der: CertificateDer<'static>,
    /// Listening address on [`RECORDED_HOST`].
    pub recorded: SocketAddr,
    /// Listening address on [`TUNNELLED_HOST`].
    pub tunnelled: SocketAddr,
    /// What the [`RECORDED_HOST`] listener served.
    pub recorded_served: Arc<Served>,
    /// What the [`TUNNELLED_HOST`] listener served.
    pub tunnelled_served: Arc<Served>,
    /// The bodies.
    pub content: Arc<Content>,
}

impl Origin {
    /// Generates the CA and leaf and starts listening on both hosts.
    pub async fn start() -> Result<Origin> {
        let ca_key = KeyPair::generate().context("generating the origin CA key")?;
        let mut ca_params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "psmgate bench origin CA");
        ca_params.distinguished_name = dn;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params
            .self_signed(&ca_key)
            .context("signing the origin CA")?;
        let leaf_key = KeyPair::generate().context("generating the origin key")?;
        let mut leaf_params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "psmgate bench origin");
        leaf_params.distinguished_name = dn;
        leaf_params.subject_alt_names = vec![
            SanType::IpAddress(IpAddr::V4(RECORDED_HOST)),
            SanType::IpAddress(IpAddr::V4(TUNNELLED_HOST)),
        ];
        let leaf = leaf_params
            .signed_by(&leaf_key, &ca, &ca_key)
            .context("signing the origin certificate")?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
        .context("origin TLS configuration")?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let content = Arc::new(Content::new());
        let (recorded, recorded_served) = listen(RECORDED_HOST, &acceptor, &content).await?;
        let (tunnelled, tunnelled_served) = listen(TUNNELLED_HOST, &acceptor, &content).await?;
        Ok(Origin {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            recorded,
            tunnelled,
            recorded_served,
            tunnelled_served,
            content,
        })
    }
}

/// Binds `host:0` and serves every connection on its own task.
async fn listen(
    host: Ipv4Addr,
    acceptor: &tokio_rustls::TlsAcceptor,
    content: &Arc<Content>,
) -> Result<(SocketAddr, Arc<Served>)> {
    let listener = tokio::net::TcpListener::bind((host, 0))
        .await
        .with_context(|| format!("binding the origin on {host}"))?;
    let addr = listener.local_addr()?;
    let served = Arc::new(Served::default());
    let (acceptor, content, counts) = (acceptor.clone(), content.clone(), served.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                // Out of descriptors or similar: wait instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, content, counts) = (acceptor.clone(), content.clone(), counts.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                counts.connections.fetch_add(1, Ordering::Relaxed);
                let service = hyper::service::service_fn(move |req| {
                    let response = respond(&content, &req);
                    counts.requests.fetch_add(1, Ordering::Relaxed);
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Ok((addr, served))
}

fn respond(content: &Content, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let found = (req.method() == Method::GET)
        .then(|| content.get(req.uri().path()))
        .flatten();
    let mut builder = Response::builder();
    let body = match found {
        Some(r) => {
            builder = builder
                .header(hyper::header::CONTENT_TYPE, r.content_type)
                .header(hyper::header::CACHE_CONTROL, "no-store");
            r.body.clone()
        }
        None => {
            builder = builder.status(StatusCode::NOT_FOUND);
            Bytes::from_static(b"not found\n")
        }
    };
    builder
        .body(Full::new(body))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
