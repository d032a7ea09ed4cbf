//! Checks on captured images: PNG dimensions, and pixel comparison via Pillow.

use super::process::run_ok;
use super::{helper_script, venv_python, PeerError, Result};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Deadline of one image comparison.
const COMPARE_TIMEOUT: Duration = Duration::from_secs(20);

/// Width and height of a PNG file, from its IHDR chunk.
pub fn png_size(path: &Path) -> Result<(u32, u32)> {
    let bytes =
        std::fs::read(path).map_err(|e| PeerError::io(format!("reading {}", path.display()), e))?;
    parse_png_size(&bytes).ok_or_else(|| PeerError::Failed {
        what: path.display().to_string(),
        detail: "not a PNG file".into(),
    })
}

fn parse_png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.get(..8)? != SIGNATURE || bytes.get(12..16)? != b"IHDR" {
        return None;
    }
    let be = |range: std::ops::Range<usize>| -> Option<u32> {
        Some(u32::from_be_bytes(bytes.get(range)?.try_into().ok()?))
    };
    Some((be(16..20)?, be(20..24)?))
}

/// The fraction (0.0 to 1.0) of pixels that differ between two images of the same size
/// (any channel counts), computed with `tests/peers/imgdiff.py`. An error if the sizes differ.
pub fn image_difference(a: &Path, b: &Path) -> Result<f64> {
    let out = run_ok(
        Command::new(venv_python()?)
            .arg(helper_script("imgdiff.py")?)
            .arg(a)
            .arg(b),
        "image comparison (tests/peers/imgdiff.py)",
        COMPARE_TIMEOUT,
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().map_err(|_| PeerError::Failed {
        what: "image comparison (tests/peers/imgdiff.py)".into(),
        detail: format!("unexpected output {text:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_dimensions_come_from_ihdr() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend(1024u32.to_be_bytes());
        png.extend(768u32.to_be_bytes());
        assert_eq!(parse_png_size(&png), Some((1024, 768)));
        assert_eq!(parse_png_size(&png[..20]), None);
        png[1] = b'X';
        assert_eq!(parse_png_size(&png), None);
    }
}
