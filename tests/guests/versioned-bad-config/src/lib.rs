//! Build `bad-config` of the versioned test sink (hot-reload tests).

const VERSION: &str = "bad-config";
const FAIL: Option<&str> = Some("configure");

#[path = "../../versioned-v1/src/sink.rs"]
mod sink;

oort_sdk::export_sink!(sink::Versioned);
