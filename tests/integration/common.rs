//! A scratch folder with the plugins installed, and a way to run `oort` in it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A temporary folder holding `plugins/sinks/` (every shipped sink and test guest) and whatever
/// rule, streams and data a test writes into it.
pub struct Scratch {
    dir: TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("oort-test-")
            .tempdir()
            .expect("a temporary folder");
        oort_tests::install_all(&dir.path().join("plugins")).expect("installing the plugins");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("creating a folder");
        }
        std::fs::write(&path, text).expect("writing a test file");
        path
    }

    pub fn read(&self, rel: &str) -> String {
        let path = self.dir.path().join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    /// `oort <args>` in this folder, with the test component cache and quiet logs.
    pub fn oort(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_oort"));
        cmd.current_dir(self.dir.path())
            .args(args)
            .env("OORT_CACHE_DIR", oort_tests::cache_dir())
            .env("OORT_PLUGINS", self.dir.path().join("plugins"))
            .env("OORT_LOG", "warn")
            .env_remove("XDG_CACHE_HOME");
        cmd
    }

    /// Installs a built component as `plugins/sinks/<name>.wasm` (with its manifest).
    pub fn install(&self, name: &str, wasm: &str, manifest: &str) {
        oort_tests::install(&self.dir.path().join("plugins"), name, wasm, manifest)
            .expect("installing a component");
    }

    /// Starts `oort run-rule rule.json --streams streams.sql <extra>` with stdin and stdout
    /// piped, for rules that read stdin.
    pub fn spawn_rule(&self, extra: &[&str]) -> Child {
        let mut args = vec!["run-rule", "rule.json", "--streams", "streams.sql"];
        args.extend(extra);
        self.oort(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting oort")
    }

    /// Runs `oort run-rule rule.json --streams streams.sql --log <level>`; returns whether it
    /// succeeded and its log.
    pub fn run_logged(&self, level: &str) -> (bool, String) {
        let out = self
            .oort(&[
                "run-rule",
                "rule.json",
                "--streams",
                "streams.sql",
                "--log",
                level,
            ])
            .output()
            .expect("running oort");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs `oort run-rule rule.json --streams streams.sql --json` and returns the outcome.
    pub fn run_rule(&self, extra: &[&str]) -> Run {
        let mut args = vec!["run-rule", "rule.json", "--json", "--max-instances", "32"];
        if self.path().join("streams.sql").is_file() {
            args.extend(["--streams", "streams.sql"]);
        }
        args.extend(extra);
        Run::from(self.oort(&args).output().expect("running oort"))
    }
}

/// What a run of `oort` gave.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Self {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    /// The JSON summary (`--json`).
    pub fn summary(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "the summary is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// The counters of action `index` of the first rule.
    pub fn action(&self, index: usize) -> serde_json::Value {
        self.summary()["rules"][0]["actions"][index].clone()
    }

    pub fn assert_ok(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "oort failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Writes the lines `{"n":0}`..`{"n":count-1}` as JSON lines.
pub fn numbered(count: usize) -> String {
    (0..count).map(|i| format!("{{\"n\":{i}}}\n")).collect()
}

/// The stream definition of rules that read stdin.
pub const STDIN_STREAM: &str = "CREATE STREAM s () WITH (TYPE=\"stdin\");";

/// Collects a spawned child's stderr, line by line, into a string the test can poll.
pub fn collect_stderr(child: &mut Child) -> std::sync::Arc<std::sync::Mutex<String>> {
    use std::io::{BufRead, BufReader};
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = std::sync::Arc::clone(&log);
    let stderr = child.stderr.take().expect("stderr is piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    log
}

/// Waits until `done` holds, or fails the test after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
