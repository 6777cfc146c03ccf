//! Helpers of the integration tests: the scratch folder and `oort` runs (from the `oort-tests`
//! library, shared with the rule cases), a rule run spawned in the background, numbered input,
//! stderr collection and waiting.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub use oort_tests::scratch::{Run, Scratch};

/// Writes the lines `{"n":0}`..`{"n":count-1}` as JSON lines.
pub fn numbered(count: usize) -> String {
    (0..count).map(|i| format!("{{\"n\":{i}}}\n")).collect()
}

/// The stream definition of rules that read stdin.
pub const STDIN_STREAM: &str = "CREATE STREAM s () WITH (TYPE=\"stdin\");";

/// How [`spawn_rule`] starts `oort run-rule <rule> --streams streams.sql` in a scratch
/// folder. The default: `rule.json`, `--json --log info`, stdin inherited.
#[derive(Debug, Clone, Copy)]
pub struct Spawn<'a> {
    /// The rule file (or rule set) to run.
    pub rule: &'a str,
    /// The `--log` filter (`info`, `oort=debug`).
    pub log: &'a str,
    /// Whether to pass `--json` (the summary as JSON on stdout).
    pub json: bool,
    /// Arguments after those (`--grace 2s`, `--watch`).
    pub args: &'a [&'a str],
    /// Environment variables set for the run.
    pub env: &'a [(&'a str, &'a str)],
    /// Whether to pipe stdin (for rules reading it).
    pub stdin: bool,
}

impl Default for Spawn<'_> {
    fn default() -> Self {
        Self {
            rule: "rule.json",
            log: "info",
            json: true,
            args: &[],
            env: &[],
            stdin: false,
        }
    }
}

/// Starts the scratch folder's rule over its `streams.sql` in the background, stdout and
/// stderr piped (see [`collect_stderr`]).
pub fn spawn_rule(scratch: &Scratch, spawn: &Spawn<'_>) -> Child {
    let mut args = vec!["run-rule", spawn.rule, "--streams", "streams.sql"];
    if spawn.json {
        args.push("--json");
    }
    args.extend(["--log", spawn.log]);
    args.extend(spawn.args);
    let mut cmd = scratch.oort(&args);
    cmd.envs(spawn.env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if spawn.stdin {
        cmd.stdin(Stdio::piped());
    }
    cmd.spawn().expect("starting oort")
}

/// [`spawn_rule`] with stdin piped and stderr collected: the run and its log so far.
pub fn spawn_logged(
    scratch: &Scratch,
    spawn: &Spawn<'_>,
) -> (Child, std::sync::Arc<std::sync::Mutex<String>>) {
    let mut child = spawn_rule(
        scratch,
        &Spawn {
            stdin: true,
            ..*spawn
        },
    );
    let log = collect_stderr(&mut child);
    (child, log)
}

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
