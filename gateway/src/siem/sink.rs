//! Where a sink's bytes go: a TCP or TLS connection to a receiver, or a local file.
//!
//! A connection also answers the two questions delivery depends on: has the receiver closed it
//! ([`Connection::peer_closed`]), and has the receiver's TCP acknowledged every byte written
//! ([`Connection::unacknowledged`]). Neither says that the receiver processed what it got (plain
//! syslog over TCP has no acknowledgement of its own); see [`super`] for how they are used.

use anyhow::{anyhow, Context, Result};
use psmgate_policy::{SiemSink, SiemTransport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// How long connecting (TCP and TLS handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one write may take before the connection counts as broken (a receiver that stopped
/// reading).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a sink connects or writes, prepared from its configuration.
#[derive(Clone)]
pub enum Destination {
    /// A receiver over TCP, TLS when `tls` is set.
    Net {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
        /// Client configuration and the name the certificate must carry.
        tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    },
    /// A local file, appended to.
    File(PathBuf),
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Net { host, port, tls } => {
                write!(
                    f,
                    "{}:{port}",
                    if host.contains(':') {
                        format!("[{host}]")
                    } else {
                        host.clone()
                    }
                )?;
                if tls.is_some() {
                    f.write_str(" (TLS)")?;
                }
                Ok(())
            }
            Destination::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The roots a TLS sink trusts: the certificates of the PEM file `ca`, else the system's.
fn roots(ca: Option<&PathBuf>) -> Result<rustls::RootCertStore> {
    let Some(ca) = ca else {
        return crate::web::upstream::roots(&[]);
    };
    let pem =
        std::fs::read(ca).with_context(|| format!("reading SIEM CA file {}", ca.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{}: bad certificate PEM: {e}", ca.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", ca.display());
    let mut store = rustls::RootCertStore::empty();
    for c in certs {
        store
            .add(c)
            .with_context(|| format!("{}: unusable CA certificate", ca.display()))?;
    }
    Ok(store)
}

impl Destination {
    /// The destination of `sink` (a valid configuration): reads the TLS roots.
    pub fn of(sink: &SiemSink) -> Result<Destination> {
        match sink.transport {
            SiemTransport::File => Ok(Destination::File(
                sink.path.clone().context("a file sink has a path")?,
            )),
            SiemTransport::Tcp | SiemTransport::Tls => {
                let (host, port) = sink
                    .host_port()
                    .context("a network sink has a host:port address")?;
                let tls = if sink.transport == SiemTransport::Tls {
                    let roots = Arc::new(roots(sink.ca.as_ref())?);
                    let config = crate::web::upstream::client_config(roots, &[])?;
                    let name = sink.tls_name().unwrap_or_else(|| host.clone());
                    let name = ServerName::try_from(name.clone())
                        .map_err(|e| anyhow!("{name:?} is not a TLS server name: {e}"))?;
                    Some((Arc::new(config), name))
                } else {
                    None
                };
                Ok(Destination::Net { host, port, tls })
            }
        }
    }

    /// Connects (or opens the file).
    pub async fn connect(&self) -> Result<Connection> {
        match self {
            Destination::File(path) => {
                if let Some(dir) = path.parent() {
                    tokio::fs::create_dir_all(dir)
                        .await
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                let f = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await
                    .with_context(|| format!("opening {}", path.display()))?;
                Ok(Connection::File(f))
            }
            Destination::Net { host, port, tls } => {
                let tcp = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    TcpStream::connect((host.as_str(), *port)),
                )
                .await
                .map_err(|_| anyhow!("connecting to {self:?} timed out"))?
                .with_context(|| format!("connecting to {self:?}"))?;
                let _ = tcp.set_nodelay(true);
                let Some((config, name)) = tls else {
                    return Ok(Connection::Tcp(tcp));
                };
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let tls =
                    tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name.clone(), tcp))
                        .await
                        .map_err(|_| anyhow!("TLS handshake with {self:?} timed out"))?
                        .with_context(|| format!("TLS handshake with {self:?}"))?;
                Ok(Connection::Tls(Box::new(tls)))
            }
        }
    }
}

/// An open destination.
pub enum Connection {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// A file open for appending.
    File(tokio::fs::File),
}

impl Connection {
    /// Writes `bytes` completely and pushes them out (to the socket; to the disk, durably, for a
    /// file). A write that takes longer than [`WRITE_TIMEOUT`] fails.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let write = async {
            match self {
                Connection::Tcp(s) => {
                    s.write_all(bytes).await?;
                    s.flush().await
                }
                Connection::Tls(s) => {
                    s.write_all(bytes).await?;
                    s.flush().await
                }
                Connection::File(f) => {
                    f.write_all(bytes).await?;
                    f.flush().await?;
                    f.sync_data().await
                }
            }
        };
        tokio::time::timeout(WRITE_TIMEOUT, write)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the write timed out"))?
    }

    /// True when the receiver closed the connection (an error when it reset it). Anything the
    /// receiver sent is read and dropped. A file is never closed.
    pub async fn peer_closed(&mut self) -> io::Result<bool> {
        match self {
            Connection::Tcp(s) => closed(s).await,
            Connection::Tls(s) => closed(s.as_mut()).await,
            Connection::File(_) => Ok(false),
        }
    }

    /// Bytes written that the receiver's TCP has not acknowledged yet (Linux `SIOCOUTQ`);
    /// always 0 for a file (written durably by [`Connection::send`]).
    pub fn unacknowledged(&self) -> io::Result<usize> {
        match self {
            Connection::Tcp(s) => unacked(s.as_raw_fd()),
            Connection::Tls(s) => unacked(s.get_ref().0.as_raw_fd()),
            Connection::File(_) => Ok(0),
        }
    }

    /// Of the first `written` bytes sent on this connection, how many the receiver's TCP has
    /// acknowledged, as far as can be told: all but the unacknowledged ones over TCP; over TLS
    /// (whose bytes on the wire are not the bytes written) all once none is unacknowledged, else
    /// none known; all for a file.
    pub fn acknowledged(&self, written: u64) -> io::Result<u64> {
        let pending = self.unacknowledged()? as u64;
        Ok(match self {
            Connection::Tcp(_) => written.saturating_sub(pending),
            Connection::Tls(_) if pending == 0 => written,
            Connection::Tls(_) => 0,
            Connection::File(_) => written,
        })
    }

    /// True for a connection to a receiver (whose delivery is confirmed as [`super`] says),
    /// false for a file.
    pub fn is_network(&self) -> bool {
        !matches!(self, Connection::File(_))
    }
}

/// Reads whatever is ready without waiting: end of stream means closed.
async fn closed<S: AsyncRead + Unpin + ?Sized>(s: &mut S) -> io::Result<bool> {
    let mut buf = [0u8; 1024];
    // A bounded number of reads: a receiver that keeps sending does not hold the sink here.
    for _ in 0..64 {
        let mut rb = ReadBuf::new(&mut buf);
        let polled =
            std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *s).poll_read(cx, &mut rb))).await;
        match polled {
            Poll::Pending => return Ok(false),
            Poll::Ready(Ok(())) if rb.filled().is_empty() => return Ok(true),
            Poll::Ready(Ok(())) => continue,
            Poll::Ready(Err(e)) => return Err(e),
        }
    }
    Ok(false)
}

/// Bytes in the socket's send queue not acknowledged by the peer.
fn unacked(fd: RawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: `fd` is an open TCP socket borrowed from a live stream for the duration of the
    // call, and TIOCOUTQ (SIOCOUTQ) writes exactly one `c_int` through the pointer, which points
    // at `n`.
    let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n as *mut libc::c_int) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn closing_and_acknowledgement_are_seen() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let dest = Destination::Net {
            host: "127.0.0.1".into(),
            port,
            tls: None,
        };
        let mut conn = dest.connect().await.unwrap();
        let (mut peer, _) = listener.accept().await.unwrap();
        assert!(!conn.peer_closed().await.unwrap());
        conn.send(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        // Loopback acknowledges at once.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while conn.unacknowledged().unwrap() > 0 {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(conn.acknowledged(5).unwrap(), 5);
        // What the receiver sends is dropped; its close is seen.
        peer.write_all(b"noise").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!conn.peer_closed().await.unwrap());
        drop(peer);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(conn.peer_closed().await.unwrap_or(true));
        assert!(conn.is_network());
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dest = Destination::Net {
            host: "127.0.0.1".into(),
            port,
            tls: None,
        };
        let e = dest.connect().await.err().expect("nothing listens");
        assert!(
            format!("{e:#}").contains(&format!("127.0.0.1:{port}")),
            "{e:#}"
        );
    }

    #[tokio::test]
    async fn a_file_is_appended_durably() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out").join("audit.jsonl");
        let dest = Destination::File(path.clone());
        for line in ["a\n", "b\n"] {
            let mut c = dest.connect().await.unwrap();
            c.send(line.as_bytes()).await.unwrap();
            assert!(!c.peer_closed().await.unwrap());
            assert_eq!(c.unacknowledged().unwrap(), 0);
            assert_eq!(c.acknowledged(2).unwrap(), 2);
            assert!(!c.is_network());
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\n");
    }

    #[test]
    fn tls_roots_come_from_the_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::web::ca::WebCa::load_or_generate(dir.path()).unwrap();
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, ca.pem()).unwrap();
        assert_eq!(roots(Some(&good)).unwrap().len(), 1);
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "nothing").unwrap();
        assert!(format!("{:#}", roots(Some(&bad)).unwrap_err()).contains("bad.pem"));
        let missing = dir.path().join("missing.pem");
        assert!(format!("{:#}", roots(Some(&missing)).unwrap_err()).contains("missing.pem"));
    }
}
