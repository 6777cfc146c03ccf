//! The mutation fuzzer Oort's parser fuzz tests share: seeded mutations of real inputs, run for
//! a time budget, with no panic and no hang allowed.
//!
//! Each input is made from a seed statement (a rule case's SQL, a rule file, a template, a
//! configuration file) by a few mutations: a token from a dictionary inserted, a range deleted,
//! duplicated or spliced from another seed. The generator is a small xorshift, so every input
//! has a seed of its own and a failure is replayed from the one it prints (`OORT_FUZZ_SEED`),
//! without a fuzzing engine or a nightly toolchain.
//!
//! A panic stops the run and reports the input, its seed and where it panicked; an input that
//! runs longer than `OORT_FUZZ_HANG_SECONDS` (60 by default: wall time, which a
//! loaded machine stretches, of unoptimised code) is a hang: a watchdog thread
//! reports it and ends the process. `OORT_FUZZ_SECONDS` sets the budget. At the end a run prints
//! its executions per second and its coverage, counted as the distinct outcomes it reached:
//! the results and error messages of its inputs with the parts that quote the input (numbers,
//! `` `names` ``, `"strings"`, `<actions>`) blanked, so each counts a path through the parser
//! that answered differently. `OORT_FUZZ_LIST=1` prints those outcomes.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use oort_value::Value;

/// xorshift64*: deterministic from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting at `seed` (0 is moved to 1: xorshift never leaves 0).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// One of `items` (which must not be empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// True once in `n` draws.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// One to four mutations of one of `seeds`: a token of `tokens` inserted (twice as likely as the
/// others), a range of up to 12 characters deleted, one of up to 20 duplicated, or the rest
/// replaced by the tail of another seed.
pub fn mutate(rng: &mut Rng, seeds: &[String], tokens: &[&str]) -> String {
    let mut text: Vec<char> = rng.pick(seeds).chars().collect();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(text.len() + 1);
        match rng.below(5) {
            0 | 1 => {
                let token: Vec<char> = rng.pick(tokens).chars().collect();
                text.splice(at..at, token);
            }
            2 => {
                let end = (at + rng.below(12)).min(text.len());
                text.drain(at..end);
            }
            3 => {
                let end = (at + rng.below(20)).min(text.len());
                let copy: Vec<char> = text[at..end].to_vec();
                text.splice(at..at, copy);
            }
            _ => {
                let other: Vec<char> = rng.pick(seeds).chars().collect();
                let from = rng.below(other.len() + 1);
                text.truncate(at);
                text.extend(&other[from..]);
            }
        }
    }
    text.into_iter().collect()
}

/// A value to feed what was parsed: nulls, extreme numbers, odd strings, bytes, and (to depth 3)
/// arrays and objects with the keys `a`, `b`, `y`, `z`.
pub fn value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 2 { 8 } else { 10 }) {
        0 => Value::Null,
        1 => Value::Int(*rng.pick(&[0, 1, -1, i64::MAX, i64::MIN, 18014398509481984, 7])),
        2 => Value::Float(*rng.pick(&[
            0.0,
            -0.0,
            1.5,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::NAN,
            f64::INFINITY,
        ])),
        3 => Value::string(*rng.pick(&[
            "",
            "red",
            "%",
            "\u{1F600}é",
            "2024-01-01T00:00:00Z",
            "12",
            "{{.}}",
            "<a&b>",
            "\"\n\\",
        ])),
        4 => Value::Bool(rng.one_in(2)),
        5 => Value::Int(rng.below(100) as i64),
        6 => Value::string("a".repeat(rng.below(40))),
        7 => Value::Bytes(Arc::from(&b"\x00\xffab"[..rng.below(5)])),
        8 => Value::array((0..rng.below(5)).map(|_| value(rng, depth + 1)).collect()),
        _ => {
            let pairs = (0..rng.below(5))
                .map(|i| {
                    let key: Arc<str> = Arc::from(["a", "b", "y", "z", ""][i]);
                    (key, value(rng, depth + 1))
                })
                .collect();
            Value::object(pairs)
        }
    }
}

/// The text of file `name` in each folder of `dir` (`tests/rules/*/rule.json`), in folder order.
pub fn files_in_folders(dir: &Path, name: &str) -> Vec<String> {
    let mut folders: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    folders.sort();
    folders
        .iter()
        .filter_map(|f| std::fs::read_to_string(f.join(name)).ok())
        .collect()
}

/// An error message or result with the parts that quote the input blanked: digits, and what is
/// between backquotes, double quotes or angle brackets (up to 80 characters); at most 160
/// characters.
pub fn outcome_shape(text: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() && out.len() < 160 {
        let c = chars[i];
        let close = match c {
            '`' => Some('`'),
            '"' => Some('"'),
            '<' => Some('>'),
            _ => None,
        };
        if let Some(close) = close
            && let Some(len) = chars[i + 1..].iter().take(80).position(|&d| d == close)
        {
            out.push(c);
            out.push('_');
            out.push(close);
            i += len + 2;
            continue;
        }
        if c.is_ascii_digit() {
            out.push('#');
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// What a fuzz run did.
#[derive(Debug, Clone)]
pub struct Report {
    /// Inputs run.
    pub runs: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// The distinct outcomes reached (see [`outcome_shape`]).
    pub outcomes: BTreeSet<String>,
    /// The longest an input ran, and its seed.
    pub slowest: (Duration, u64),
}

impl Report {
    /// Inputs per second.
    pub fn rate(&self) -> f64 {
        self.runs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A fuzz run's settings, from the environment.
#[derive(Debug, Clone)]
pub struct Fuzz {
    name: String,
    budget: Duration,
    seed: u64,
    hang_limit: Duration,
}

thread_local! {
    /// Set while this thread runs fuzz inputs: its panics are reported by the run, not printed.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    /// Where this thread's last panic happened.
    static PANICKED_AT: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Installs, once, a panic hook that is quiet on threads running fuzz inputs.
fn install_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                let at = info.location().map(ToString::to_string).unwrap_or_default();
                PANICKED_AT.with(|p| *p.borrow_mut() = at);
            } else {
                default(info);
            }
        }));
    });
}

/// What the watchdog sees of the input running.
struct Watch {
    /// Milliseconds since `base` when the current input started, plus one (0: none running).
    busy_since: AtomicU64,
    /// The current input, as `{:?}` prints it, and its seed.
    input: Mutex<(u64, String)>,
    done: AtomicBool,
    base: Instant,
}

impl Fuzz {
    /// A run named `name` (in its output) with the budget of `OORT_FUZZ_SECONDS` (else
    /// `default_seconds`), the seed of `OORT_FUZZ_SEED` (else the clock) and the hang limit of
    /// `OORT_FUZZ_HANG_SECONDS` (else 60).
    pub fn from_env(name: &str, default_seconds: u64) -> Self {
        let env = |key: &str| std::env::var(key).ok().and_then(|s| s.parse::<u64>().ok());
        let seed = env("OORT_FUZZ_SEED").unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
        Self {
            name: name.to_string(),
            budget: Duration::from_secs(env("OORT_FUZZ_SECONDS").unwrap_or(default_seconds)),
            seed,
            hang_limit: Duration::from_secs(env("OORT_FUZZ_HANG_SECONDS").unwrap_or(60).max(1)),
        }
    }

    /// Runs inputs until the budget is spent: `make` builds one from its generator, `exec` runs
    /// it (with the same generator, for the data it needs) and describes its outcome (an error
    /// message, or a word for success). Panics with the input and its seed if one panicked.
    pub fn run<I: Debug>(
        &self,
        make: impl Fn(&mut Rng) -> I,
        exec: impl Fn(&I, &mut Rng) -> String,
    ) -> Report {
        install_hook();
        let watch = Arc::new(Watch {
            busy_since: AtomicU64::new(0),
            input: Mutex::new((0, String::new())),
            done: AtomicBool::new(false),
            base: Instant::now(),
        });
        let watchdog = {
            let watch = Arc::clone(&watch);
            let name = self.name.clone();
            let limit = self.hang_limit;
            std::thread::spawn(move || watchdog(&watch, &name, limit))
        };
        QUIET.with(|q| q.set(true));
        let started = Instant::now();
        let mut runs = 0u64;
        let mut outcomes = BTreeSet::new();
        let mut failure = None;
        let mut slowest = (Duration::ZERO, 0, String::new());
        while started.elapsed() < self.budget {
            // Each input has its own seed, so one failure replays alone.
            let input_seed = self
                .seed
                .wrapping_add(runs.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                | 1;
            let mut rng = Rng::new(input_seed);
            let input = make(&mut rng);
            if let Ok(mut current) = watch.input.lock() {
                *current = (input_seed, format!("{input:?}"));
            }
            let now = watch.base.elapsed();
            watch
                .busy_since
                .store(now.as_millis() as u64 + 1, Ordering::SeqCst);
            let result = catch_unwind(AssertUnwindSafe(|| exec(&input, &mut rng)));
            watch.busy_since.store(0, Ordering::SeqCst);
            let took = watch.base.elapsed() - now;
            if took > slowest.0 {
                slowest = (took, input_seed, format!("{input:?}"));
            }
            match result {
                Ok(outcome) => {
                    outcomes.insert(outcome_shape(&outcome));
                }
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    let at = PANICKED_AT.with(|p| p.borrow().clone());
                    failure = Some(format!(
                        "OORT_FUZZ_SEED={input_seed}: {what} at {at}\ninput: {input:?}"
                    ));
                    break;
                }
            }
            runs += 1;
        }
        QUIET.with(|q| q.set(false));
        watch.done.store(true, Ordering::SeqCst);
        let _ = watchdog.join();
        let report = Report {
            runs,
            elapsed: started.elapsed(),
            outcomes,
            slowest: (slowest.0, slowest.1),
        };
        eprintln!(
            "fuzz {}: {} inputs in {:.1} s ({:.0}/s), {} distinct outcomes, seed {}; the slowest \
             input took {} ms (OORT_FUZZ_SEED={})",
            self.name,
            report.runs,
            report.elapsed.as_secs_f64(),
            report.rate(),
            report.outcomes.len(),
            self.seed,
            slowest.0.as_millis(),
            slowest.1,
        );
        if slowest.0 > self.hang_limit / 10 {
            eprintln!("  slowest input: {}", slowest.2);
        }
        if std::env::var_os("OORT_FUZZ_LIST").is_some() {
            for outcome in &report.outcomes {
                eprintln!("  {outcome}");
            }
        }
        if let Some(f) = failure {
            panic!("fuzz {}: a panic from input {f}", self.name);
        }
        report
    }
}

/// Ends the process, with the input, when one input runs longer than `limit`.
fn watchdog(watch: &Watch, name: &str, limit: Duration) {
    while !watch.done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        let since = watch.busy_since.load(Ordering::SeqCst);
        if since == 0 {
            continue;
        }
        let now = watch.base.elapsed().as_millis() as u64;
        if now.saturating_sub(since - 1) > limit.as_millis() as u64 {
            let (seed, input) = watch
                .input
                .lock()
                .map(|i| i.clone())
                .unwrap_or_else(|e| e.into_inner().clone());
            eprintln!(
                "fuzz {name}: a hang: OORT_FUZZ_SEED={seed}: the input ran for more than {} s\ninput: {input}",
                limit.as_secs()
            );
            std::process::exit(101);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_blank_what_quotes_the_input() {
        assert_eq!(
            outcome_shape("rule `r1`: field `options.qos`: expected 0, got \"x\" at line 3"),
            "rule `_`: field `_`: expected #, got \"_\" at line #"
        );
        assert_eq!(
            outcome_shape("1:5: executing at <index . 9>: out of range"),
            "#:#: executing at <_>: out of range"
        );
        assert_eq!(outcome_shape("a `never closed"), "a `never closed");
    }

    #[test]
    fn a_seed_makes_the_same_input() {
        let seeds = vec!["SELECT * FROM demo".to_string()];
        let a = mutate(&mut Rng::new(42), &seeds, &["(", "x"]);
        let b = mutate(&mut Rng::new(42), &seeds, &["(", "x"]);
        assert_eq!(a, b);
    }
}
