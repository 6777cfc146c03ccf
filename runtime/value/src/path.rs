//! Paths that rules and stream definitions name, resolved against the folder of the file that
//! names them.

use std::path::{Component as PathPart, Path, PathBuf};

/// `path` made absolute against `base`, with `.` and `..` removed lexically.
pub fn absolute(base: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    };
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            PathPart::CurDir => {}
            PathPart::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
