//! The static web player and the admin web UI, embedded at build time from `web-player/` and
//! `gateway/ui/`.

include!(concat!(env!("OUT_DIR"), "/player_assets.rs"));
include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// The bytes of a web UI file by relative path.
pub fn ui_file(path: &str) -> Option<&'static [u8]> {
    UI_FILES.iter().find(|(p, _)| *p == path).map(|(_, b)| *b)
}

/// The bytes of a player file by relative path.
pub fn player_file(path: &str) -> Option<&'static [u8]> {
    PLAYER_FILES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, b)| *b)
}

/// Content type by file extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "jsonl" => "application/x-ndjson",
        "mp4" | "m4s" => "video/mp4",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        _ => "application/octet-stream",
    }
}
