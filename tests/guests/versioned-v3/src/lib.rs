//! Build `v3` of the versioned test sink (hot-reload tests).

const VERSION: &str = "v3";
const FAIL: Option<&str> = None;

#[path = "../../versioned-v1/src/sink.rs"]
mod sink;

oort_sdk::export_sink!(sink::Versioned);
