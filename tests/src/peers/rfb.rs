//! Minimal client-side looks at an RFB server.

use super::process::POLL;
use super::{PeerError, Result};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Per-read deadline of the handshake probes.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// What an RFB server says before authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RfbHello {
    /// The ProtocolVersion line without its newline, e.g. `RFB 003.008`.
    pub version: String,
    /// The security types offered to an RFB 3.8 client (1 = None, 2 = VNC authentication,
    /// 19 = VeNCrypt, ...). Empty if the server refused the connection.
    pub security_types: Vec<u8>,
}

/// Connects to 127.0.0.1:`port`, reads the banner, answers `RFB 003.008` and reads the list of
/// security types, then hangs up.
pub fn rfb_hello(port: u16) -> Result<RfbHello> {
    let what = format!("RFB handshake with 127.0.0.1:{port}");
    let io = |e| PeerError::io(what.clone(), e);
    let mut stream = connect(port).map_err(io)?;
    let version = read_banner(&mut stream).map_err(io)?;
    stream.write_all(b"RFB 003.008\n").map_err(io)?;
    let mut count = [0u8; 1];
    stream.read_exact(&mut count).map_err(io)?;
    let mut security_types = vec![0u8; usize::from(count[0])];
    stream.read_exact(&mut security_types).map_err(io)?;
    Ok(RfbHello {
        version,
        security_types,
    })
}

/// Waits until 127.0.0.1:`port` accepts a connection and sends an `RFB 003.xxx` banner;
/// returns the banner (e.g. `RFB 003.008`). Each probe connection is closed right away.
pub fn wait_for_rfb(port: u16, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = connect(port).and_then(|mut s| read_banner(&mut s));
        match attempt {
            Ok(banner) if banner.starts_with("RFB 003.") => return Ok(banner),
            Ok(banner) => {
                return Err(PeerError::Failed {
                    what: format!("127.0.0.1:{port}"),
                    detail: format!("not an RFB server: it greeted with {banner:?}"),
                })
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(PeerError::Timeout {
                    what: format!("an RFB banner from 127.0.0.1:{port} (last error: {e})"),
                    after: timeout,
                })
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

fn connect(port: u16) -> std::io::Result<TcpStream> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// Reads the 12-byte ProtocolVersion message.
fn read_banner(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut banner = [0u8; 12];
    stream.read_exact(&mut banner)?;
    Ok(String::from_utf8_lossy(&banner).trim_end().to_owned())
}
