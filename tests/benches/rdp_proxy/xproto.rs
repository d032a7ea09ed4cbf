//! A minimal X11 client over the display's Unix socket, written against the core protocol and
//! the XTEST extension: enough to read a small region of a screen (`GetImage`) and to press keys
//! (`XTEST FakeInput`) without starting a process per call, so that both are timed precisely.
//!
//! The displays are the harness's Xvfbs, which accept local clients without authorisation.

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Core opcode of `GetImage`.
const GET_IMAGE: u8 = 73;
/// Core opcode of `GetInputFocus` (used as a round trip, like `XSync`).
const GET_INPUT_FOCUS: u8 = 43;
/// Core opcode of `QueryExtension`.
const QUERY_EXTENSION: u8 = 98;
/// Core opcode of `GetKeyboardMapping`.
const GET_KEYBOARD_MAPPING: u8 = 101;
/// XTEST minor opcode of `FakeInput`.
const XTEST_FAKE_INPUT: u8 = 2;
/// `KeyPress` / `KeyRelease` event types for `FakeInput`.
const KEY_PRESS: u8 = 2;
const KEY_RELEASE: u8 = 3;
/// `ZPixmap` image format.
const Z_PIXMAP: u8 = 2;

/// X11 keysym of Return.
pub const XK_RETURN: u32 = 0xff0d;

/// One connection to an X display.
pub struct XConn {
    sock: UnixStream,
    root: u32,
    xtest: Option<u8>,
    min_keycode: u8,
    keymap: Vec<(u32, u8)>,
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

fn u16_at(b: &[u8], i: usize) -> Result<u16> {
    Ok(u16::from_le_bytes(
        b.get(i..i + 2).context("short X reply")?.try_into()?,
    ))
}

fn u32_at(b: &[u8], i: usize) -> Result<u32> {
    Ok(u32::from_le_bytes(
        b.get(i..i + 4).context("short X reply")?.try_into()?,
    ))
}

impl XConn {
    /// Connects to display `:number` and reads the keyboard mapping.
    pub fn connect(number: u32) -> Result<XConn> {
        let path = format!("/tmp/.X11-unix/X{number}");
        let mut sock =
            UnixStream::connect(&path).with_context(|| format!("connecting to {path}"))?;
        sock.set_read_timeout(Some(Duration::from_secs(10)))?;
        // Little-endian, protocol 11.0, no authorisation.
        sock.write_all(&[0x6c, 0, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0])?;
        let mut head = [0u8; 8];
        sock.read_exact(&mut head)?;
        let extra = usize::from(u16::from_le_bytes([head[6], head[7]])) * 4;
        let mut data = vec![0u8; extra];
        sock.read_exact(&mut data)?;
        if head[0] != 1 {
            bail!(
                "display :{number} refused the connection: {}",
                String::from_utf8_lossy(data.get(..usize::from(head[1])).unwrap_or_default())
            );
        }
        let vendor_len = usize::from(u16_at(&data, 16)?);
        let formats = usize::from(*data.get(21).context("short setup")?);
        let min_keycode = *data.get(26).context("short setup")?;
        let max_keycode = *data.get(27).context("short setup")?;
        let screen = 32 + vendor_len + pad4(vendor_len) + 8 * formats;
        let root = u32_at(&data, screen)?;
        let mut c = XConn {
            sock,
            root,
            xtest: None,
            min_keycode,
            keymap: Vec::new(),
        };
        c.xtest = c.query_extension("XTEST")?;
        c.read_keymap(max_keycode)?;
        Ok(c)
    }

    /// Reads replies until one arrives (events are skipped); errors become `Err`.
    fn reply(&mut self) -> Result<Vec<u8>> {
        loop {
            let mut head = [0u8; 32];
            self.sock.read_exact(&mut head).context("reading from X")?;
            match head[0] {
                0 => bail!(
                    "X error {} (major opcode {}, resource {:#x})",
                    head[1],
                    head[10],
                    u32::from_le_bytes([head[4], head[5], head[6], head[7]])
                ),
                1 => {
                    let extra = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
                    let mut out = head.to_vec();
                    out.resize(32 + extra * 4, 0);
                    self.sock.read_exact(&mut out[32..])?;
                    return Ok(out);
                }
                _ => {} // an event
            }
        }
    }

    fn query_extension(&mut self, name: &str) -> Result<Option<u8>> {
        let n = name.len();
        let words = 2 + (n + pad4(n)) / 4;
        let mut req = vec![QUERY_EXTENSION, 0];
        req.extend_from_slice(&(words as u16).to_le_bytes());
        req.extend_from_slice(&(n as u16).to_le_bytes());
        req.extend_from_slice(&[0, 0]);
        req.extend_from_slice(name.as_bytes());
        req.resize(words * 4, 0);
        self.sock.write_all(&req)?;
        let r = self.reply()?;
        Ok((r.get(8) == Some(&1)).then(|| r[9]))
    }

    fn read_keymap(&mut self, max_keycode: u8) -> Result<()> {
        let count = max_keycode - self.min_keycode + 1;
        self.sock
            .write_all(&[GET_KEYBOARD_MAPPING, 0, 2, 0, self.min_keycode, count, 0, 0])?;
        let r = self.reply()?;
        let per = usize::from(r[1]);
        for k in 0..usize::from(count) {
            for j in 0..per {
                let sym = u32_at(&r, 32 + (k * per + j) * 4)?;
                if sym != 0 {
                    self.keymap.push((sym, self.min_keycode + k as u8));
                }
            }
        }
        Ok(())
    }

    /// The keycode producing `keysym` (any column of the mapping).
    pub fn keycode(&self, keysym: u32) -> Option<u8> {
        self.keymap
            .iter()
            .find(|(s, _)| *s == keysym)
            .map(|&(_, k)| k)
    }

    /// Presses (or releases) the key with `keycode` through XTEST; returns once the server has
    /// processed the request.
    pub fn key(&mut self, keycode: u8, down: bool) -> Result<()> {
        let Some(op) = self.xtest else {
            bail!("the display has no XTEST extension");
        };
        let mut req = [0u8; 36];
        req[0] = op;
        req[1] = XTEST_FAKE_INPUT;
        req[2] = 9;
        req[4] = if down { KEY_PRESS } else { KEY_RELEASE };
        req[5] = keycode;
        req[12..16].copy_from_slice(&self.root.to_le_bytes());
        self.sock.write_all(&req)?;
        self.sync()
    }

    /// Presses and releases the key producing `keysym`.
    pub fn tap(&mut self, keysym: u32) -> Result<()> {
        let k = self
            .keycode(keysym)
            .with_context(|| format!("no keycode for keysym {keysym:#x}"))?;
        self.key(k, true)?;
        self.key(k, false)
    }

    /// A round trip: every request sent before has been processed.
    pub fn sync(&mut self) -> Result<()> {
        self.sock.write_all(&[GET_INPUT_FOCUS, 0, 1, 0])?;
        self.reply().map(|_| ())
    }

    /// The pixels of the rectangle (`ZPixmap`, 32 bits per pixel on a depth-24 Xvfb).
    pub fn image(&mut self, x: u32, y: u32, w: u32, h: u32) -> Result<Vec<u8>> {
        let mut req = [0u8; 20];
        req[0] = GET_IMAGE;
        req[1] = Z_PIXMAP;
        req[2] = 5;
        req[4..8].copy_from_slice(&self.root.to_le_bytes());
        req[8..10].copy_from_slice(&(x as i16).to_le_bytes());
        req[10..12].copy_from_slice(&(y as i16).to_le_bytes());
        req[12..14].copy_from_slice(&(w as u16).to_le_bytes());
        req[14..16].copy_from_slice(&(h as u16).to_le_bytes());
        req[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        self.sock.write_all(&req)?;
        let mut r = self.reply()?;
        r.drain(..32);
        Ok(r)
    }
}

/// A cheap 64-bit digest of pixel data (FNV-1a over 8-byte words), for change detection.
pub fn digest(px: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut chunks = px.chunks_exact(8);
    for c in &mut chunks {
        h ^= u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    for &b in chunks.remainder() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
