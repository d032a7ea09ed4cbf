//! The in-page recorder the proxy serves on every intercepted origin's reserved path: rrweb's
//! recorder bundle followed by psmgate's glue (`web-recorder/recorder.js`) with the page's
//! masking configuration filled in.

use serde::Serialize;

include!(concat!(env!("OUT_DIR"), "/recorder_assets.rs"));

/// Everything below this path on an intercepted origin is answered by psmgate itself and never
/// forwarded.
pub const RESERVED_PREFIX: &str = "/__psmgate/";
/// The recorder script.
pub const SCRIPT_PATH: &str = "/__psmgate/recorder.js";
/// Where the recorder posts its batches.
pub const EVENTS_PATH: &str = "/__psmgate/events";

/// What the glue is configured with.
#[derive(Debug, Clone, Serialize)]
pub struct RecorderConfig {
    /// The page id psmgate gave the page when it injected the recorder.
    pub page: String,
    /// Batch endpoint (same origin).
    pub post: &'static str,
    /// How often batches are sent while events are queued.
    pub flush_ms: u64,
    /// Longest time between two batches (heartbeat).
    pub heartbeat_ms: u64,
    /// CSS selectors whose elements are masked (empty: none).
    pub mask_selectors: String,
    /// Regular expressions whose matches are masked in text and input values.
    pub mask_patterns: Vec<String>,
}

/// Whether the recorder bundle was installed when psmgate was built.
pub fn available() -> bool {
    RRWEB_RECORD.is_some()
}

/// The script for a page with `cfg`; `None` when the bundle is missing.
pub fn script(cfg: &RecorderConfig) -> Option<String> {
    let rrweb = RRWEB_RECORD?;
    let json = serde_json::to_string(cfg).ok()?;
    // JSON inside a script: `<` is escaped so `</script>` in a pattern cannot end it.
    let json = json.replace('<', "\\u003c");
    Some(format!(
        "{rrweb}\n;{}",
        RECORDER_GLUE.replacen("PSMGATE_CONFIG", &json, 1)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_is_filled_in_and_cannot_break_out() {
        let cfg = RecorderConfig {
            page: "p1".into(),
            post: EVENTS_PATH,
            flush_ms: 1000,
            heartbeat_ms: 5000,
            mask_selectors: "#k".into(),
            mask_patterns: vec!["</script><b>".into()],
        };
        let Some(s) = script(&cfg) else {
            assert!(!available());
            return;
        };
        assert!(s.contains("\"heartbeat_ms\":5000"));
        assert!(!s.contains("</script><b>"));
        assert!(s.contains("rrwebRecord"));
        assert!(!s.contains("var cfg = PSMGATE_CONFIG"));
    }
}
