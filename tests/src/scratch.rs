//! A scratch folder with the plugins installed, and a way to run the `oort` binary in it: what
//! the integration tests and the rule cases share.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use tempfile::TempDir;

/// A temporary folder holding `plugins/sinks/` (every shipped sink and test guest) and whatever
/// rule, streams and data a test writes into it.
pub struct Scratch {
    dir: TempDir,
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Scratch {
    /// A new folder with every plugin installed.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("oort-test-")
            .tempdir()
            .expect("a temporary folder");
        crate::install_all(&dir.path().join("plugins")).expect("installing the plugins");
        Self { dir }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `text` to `rel` (creating its folders) and returns its path.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("creating a folder");
        }
        std::fs::write(&path, text).expect("writing a test file");
        path
    }

    /// The text of `rel`.
    pub fn read(&self, rel: &str) -> String {
        let path = self.dir.path().join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    /// `oort <args>` in this folder, with the test component cache and quiet logs.
    pub fn oort(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(crate::oort_bin());
        cmd.current_dir(self.dir.path())
            .args(args)
            .env("OORT_CACHE_DIR", crate::cache_dir())
            .env("OORT_PLUGINS", self.dir.path().join("plugins"))
            .env("OORT_LOG", "warn")
            .env_remove("XDG_CACHE_HOME");
        cmd
    }

    /// Installs a built component as `plugins/sinks/<name>.wasm` (with its manifest).
    pub fn install(&self, name: &str, wasm: &str, manifest: &str) {
        crate::install(&self.dir.path().join("plugins"), name, wasm, manifest)
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
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
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

    /// Fails the test unless the run exited 0.
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
