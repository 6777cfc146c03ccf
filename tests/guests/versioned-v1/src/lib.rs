//! Build `v1` of the versioned test sink (hot-reload tests).

const VERSION: &str = "v1";
const FAIL: Option<&str> = None;

#[path = "sink.rs"]
mod sink;

oort_sdk::export_sink!(sink::Versioned);
