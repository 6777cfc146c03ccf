//! Helpers of the integration tests: the scratch folder and `oort` runs (from the `oort-tests`
//! library, shared with the rule cases), numbered input, stderr collection and waiting.

use std::process::Child;
use std::time::{Duration, Instant};

pub use oort_tests::scratch::{Run, Scratch};

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
