//! Build `trap` of the versioned test sink (hot-reload tests).

const VERSION: &str = "trap";
const FAIL: Option<&str> = Some("open");

#[path = "../../versioned-v1/src/sink.rs"]
mod sink;

oort_sdk::export_sink!(sink::Versioned);
