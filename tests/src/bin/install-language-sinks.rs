//! Builds the shipped Python, JavaScript and C sinks from source and installs each with its
//! manifest into `<PLUGINS>/sinks/` (what `cargo xtask sinks` runs after the Rust sinks). A
//! language whose toolchain is missing is skipped with what to install; a failed build fails.

use std::path::PathBuf;
use std::process::ExitCode;

use oort_tests::languages::{self, BuildError, Language};

fn main() -> ExitCode {
    let plugins = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("plugins"));
    let mut failed = false;
    for &language in Language::ALL {
        let folder = language.folder();
        match languages::install(language, &plugins) {
            Ok(path) => println!("sink {folder}: {}", path.display()),
            Err(BuildError::Missing(why)) => {
                println!("sink {folder}: skipped ({language} toolchain missing: {why})")
            }
            Err(err) => {
                eprintln!("sink {folder}: {err}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
