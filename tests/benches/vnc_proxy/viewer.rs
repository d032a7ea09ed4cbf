//! A minimal blocking RFB viewer built on psmgate's sans-I/O codecs: the handshake state machine
//! (`vnc_handshake::client`) and the server-stream parser (`vnc::ServerStream`) decoding into a
//! framebuffer. It times every completed FramebufferUpdate.

use anyhow::{anyhow, bail, Context, Result};
use psmgate::vnc::{ClientEvent, ServerEvent, ServerStream};
use psmgate::vnc_handshake::client::{ClientEvent as HsEvent, ClientHandshake, ClientOptions};
use psmgate::vnc_handshake::vncauth::VncPassword;
use psmgate_codecs::framebuffer::Framebuffer;
use psmgate_codecs::Rect;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Deadline of the connection handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// Read buffer size.
const READ_CHUNK: usize = 256 * 1024;

/// One viewer connection after the handshake.
pub struct Viewer {
    tcp: TcpStream,
    stream: ServerStream,
    fb: Framebuffer,
    buf: Vec<u8>,
    /// Bytes received from the server since the handshake completed.
    pub bytes_in: u64,
    /// Completed FramebufferUpdates.
    pub updates: u64,
}

impl Viewer {
    /// Connects to 127.0.0.1:`port`, authenticates with `password` (VNC Authentication, or
    /// None when the server offers it and no password is given), sends a shared ClientInit and
    /// `SetEncodings(encodings)`. The viewer keeps the server's native pixel format.
    pub fn connect(port: u16, password: Option<&str>, encodings: &[i32]) -> Result<Viewer> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut tcp = TcpStream::connect_timeout(&addr, HANDSHAKE_TIMEOUT)
            .with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        let mut hs = ClientHandshake::new(ClientOptions {
            password: password.map(|p| VncPassword::new(p.as_bytes().to_vec())),
            shared: true,
        });
        let mut buf = vec![0u8; READ_CHUNK];
        let (init, rest) = loop {
            let out = hs.take_output();
            if !out.is_empty() {
                tcp.write_all(&out)?;
            }
            let mut done = None;
            while let Some(ev) = hs.poll_event() {
                if let HsEvent::ServerInit(init) = ev {
                    done = Some(init);
                }
            }
            if let Some(init) = done {
                break (init, hs.take_leftover());
            }
            let n = tcp.read(&mut buf).context("reading the handshake")?;
            if n == 0 {
                bail!("{addr} closed the connection during the handshake");
            }
            hs.feed(&buf[..n])
                .map_err(|e| anyhow!("handshake with {addr} failed: {e}"))?;
        };
        let mut stream = ServerStream::new(init.pixel_format)
            .map_err(|e| anyhow!("server pixel format unusable: {e}"))?;
        stream.feed(&rest);
        let fb = Framebuffer::new(u32::from(init.width), u32::from(init.height))
            .map_err(|e| anyhow!("framebuffer: {e}"))?;
        let mut v = Viewer {
            tcp,
            stream,
            fb,
            buf,
            bytes_in: 0,
            updates: 0,
        };
        v.send(&ClientEvent::SetEncodings(encodings.to_vec()))?;
        Ok(v)
    }

    /// The decoded screen.
    pub fn fb(&self) -> &Framebuffer {
        &self.fb
    }

    /// The decoded screen, for taking its damage.
    pub fn fb_mut(&mut self) -> &mut Framebuffer {
        &mut self.fb
    }

    /// The whole screen.
    pub fn screen(&self) -> Rect {
        Rect::new(0, 0, self.fb.width(), self.fb.height())
    }

    /// Sends one client message.
    pub fn send(&mut self, ev: &ClientEvent) -> Result<()> {
        self.tcp
            .write_all(&ev.to_bytes())
            .context("writing to the server")
    }

    /// Requests an update of the whole screen.
    pub fn request(&mut self, incremental: bool) -> Result<()> {
        let rect = self.screen();
        self.send(&ClientEvent::UpdateRequest { incremental, rect })
    }

    /// A key press or release.
    pub fn key(&mut self, keysym: u32, down: bool) -> Result<()> {
        self.send(&ClientEvent::Key { keysym, down })
    }

    /// Waits for the next complete FramebufferUpdate until `deadline`; returns when it was
    /// parsed, or `None` at the deadline. Other server messages are consumed on the way.
    pub fn next_update(&mut self, deadline: Instant) -> Result<Option<Instant>> {
        loop {
            while let Some(p) = self
                .stream
                .next_event(&mut self.fb)
                .map_err(|e| anyhow!("undecodable server data: {e}"))?
            {
                if let ServerEvent::UpdateDone { .. } = p.event {
                    self.updates += 1;
                    return Ok(Some(Instant::now()));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.tcp.set_read_timeout(Some(left))?;
            let n = match self.tcp.read(&mut self.buf) {
                Ok(0) => bail!("the server closed the connection"),
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(None)
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("reading from the server"),
            };
            self.bytes_in += n as u64;
            self.stream.feed(&self.buf[..n]);
        }
    }

    /// Keeps one incremental request outstanding and reads updates until none arrives for
    /// `quiet` (or `limit` passes); returns how many arrived. An incremental request is
    /// outstanding afterwards.
    pub fn settle(&mut self, quiet: Duration, limit: Duration) -> Result<u32> {
        let end = Instant::now() + limit;
        let mut n = 0;
        self.request(true)?;
        loop {
            let deadline = (Instant::now() + quiet).min(end);
            match self.next_update(deadline)? {
                Some(_) => {
                    n += 1;
                    self.request(true)?;
                }
                None => return Ok(n),
            }
        }
    }
}

/// Copies the pixels of `r` out of `fb`, row by row.
pub fn copy_rect(fb: &Framebuffer, r: Rect) -> Vec<u32> {
    let w = fb.width() as usize;
    let px = fb.pixels();
    let mut out = Vec::with_capacity((r.w * r.h) as usize);
    for row in r.y..r.bottom() {
        let o = row as usize * w + r.x as usize;
        out.extend_from_slice(&px[o..o + r.w as usize]);
    }
    out
}
