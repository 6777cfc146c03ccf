//! Which environment variables cargo sets for a process it runs, shared by the tests and
//! `xtask` (which includes this file), so both can keep them from the cargo builds they start.

/// Whether cargo sets `key` for a process it runs (that package's variables), as opposed to
/// settings a user gives cargo (`CARGO_HOME`, `CARGO_TARGET_DIR`, `CARGO_PROFILE_*`, ...).
///
/// Passed on to a nested cargo build, they reach build scripts (ring's reruns when they
/// change), so two builds started with different ones would each undo the other and rebuild
/// ring, rustls and everything above them every time.
pub fn set_by_cargo(key: &str) -> bool {
    key == "OUT_DIR"
        || key.starts_with("CARGO_PKG_")
        || key.starts_with("CARGO_MANIFEST_")
        || key.starts_with("CARGO_BIN_")
        || matches!(
            key,
            "CARGO_CRATE_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
        )
}
