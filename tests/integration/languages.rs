//! Sinks written in Python, JavaScript and C: each is built from source with its language's
//! toolchain, passes the conformance harness the Rust sinks pass, and runs a rule end to end;
//! `oort sink inspect` and `oort sink new` work on them. Without a toolchain a test says
//! SKIPPED, except under `CI=true`, where it fails.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::ensure;
use oort::host::{HostConfig, SinkHost};
use oort_tests::conformance::{self, ServerKind, SinkSpec};
use oort_tests::languages::{self, BuildError, Language};

use crate::common::{Scratch, numbered};

/// The language's sink, built; `None` (after saying why) when its toolchain is missing outside CI.
fn built(language: Language) -> Option<PathBuf> {
    match languages::build(language) {
        Ok(wasm) => Some(wasm),
        Err(BuildError::Missing(why)) if !languages::in_ci() => {
            eprintln!("SKIPPED: the {language} sink: {why}");
            None
        }
        Err(e) => panic!("the {language} sink: {e}"),
    }
}

/// What the JavaScript sink is told to put before each message.
const PREFIX: &str = "conf> ";

/// The JSON-lines file sinks write one message per line, in order, and end the last line.
fn verify_lines(dir: &Path, messages: &[String]) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(dir.join("out").join("result.jsonl"))?;
    let lines: Vec<&str> = text.lines().collect();
    ensure!(
        lines == messages,
        "file holds {lines:?}, expected {messages:?}"
    );
    ensure!(text.ends_with('\n'), "close ends the last line");
    Ok(())
}

fn spec(language: Language) -> SinkSpec {
    match language {
        Language::Python | Language::C => SinkSpec {
            props: serde_json::json!({"path": "{dir}/out/result.jsonl"}),
            format: "json",
            server: ServerKind::None,
            verify: |dir, _, messages| verify_lines(dir, messages),
        },
        // The log sink's effect is the host log, checked after the harness ran (below).
        Language::JavaScript => SinkSpec {
            props: serde_json::json!({"prefix": PREFIX}),
            format: "json",
            server: ServerKind::None,
            verify: |_, _, _| Ok(()),
        },
    }
}

/// Collects what the host logs on this thread while the harness runs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

/// The messages the log sink wrote, in order, from captured log text.
fn logged(text: &str, prefix: &str) -> Vec<String> {
    let marker = format!("sink: {prefix}");
    text.lines()
        .filter_map(|line| {
            let at = line.find(&marker)?;
            let rest = &line[at + marker.len()..];
            // tracing puts the span fields after the message: ` rule=... action=...`.
            Some(rest.split(" rule=").next().unwrap_or(rest).to_string())
        })
        .collect()
}

async fn conforms(language: Language) {
    let Some(wasm) = built(language) else { return };
    let host = SinkHost::new(HostConfig {
        cache_dir: Some(oort_tests::cache_dir()),
        max_instances: 16,
        ..HostConfig::default()
    })
    .expect("the engine");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let manifest = language.manifest();
    oort_tests::install(
        dir.path(),
        language.plugin_name(),
        &wasm.display().to_string(),
        &manifest.display().to_string(),
    )
    .expect("install");
    let installed = dir
        .path()
        .join("sinks")
        .join(format!("{}.wasm", language.plugin_name()));
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("a work folder");

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let result = {
        let _capture = tracing::subscriber::set_default(subscriber);
        conformance::check(&host, &installed, &spec(language), &work).await
    };
    result.unwrap_or_else(|e| panic!("the {language} sink fails the conformance harness: {e:#}"));

    if language == Language::JavaScript {
        // The harness delivers {"n":0}..{"n":5} over three instances; all must be in the log.
        let lines = logged(&captured.text(), PREFIX);
        let ns: Vec<i64> = lines
            .iter()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).expect("a logged message")["n"]
                    .as_i64()
                    .expect("n")
            })
            .collect();
        assert_eq!(
            ns,
            [0, 1, 2, 3, 4, 5],
            "the JavaScript sink logged {lines:?}"
        );
    }
}

#[tokio::test]
async fn python_sink_conforms() {
    conforms(Language::Python).await;
}

#[tokio::test]
async fn javascript_sink_conforms() {
    conforms(Language::JavaScript).await;
}

#[tokio::test]
async fn c_sink_conforms() {
    conforms(Language::C).await;
}

/// A filter rule over 40 rows into the language's sink, through the `oort` binary.
fn runs_a_rule(language: Language) {
    if built(language).is_none() {
        return;
    }
    // Installed the way `cargo xtask sinks` installs it: the module and its manifest.
    let scratch = Scratch::new();
    languages::install(language, &scratch.path().join("plugins")).expect("installing the sink");
    scratch.write("in.jsonl", &numbered(40));
    scratch.write(
        "streams.sql",
        r#"CREATE STREAM s () WITH (TYPE="file", DATASOURCE="in.jsonl", FORMAT="json");"#,
    );
    let props = match language {
        Language::JavaScript => serde_json::json!({"prefix": ">> "}),
        _ => serde_json::json!({"path": "out/result.jsonl"}),
    };
    let rule = serde_json::json!({
        "id": "r",
        "sql": "SELECT n, n * 2 AS twice FROM s WHERE n % 3 = 0",
        "actions": [{language.action_key(): props}],
    });
    scratch.write("rule.json", &rule.to_string());
    let run = scratch.run_rule(&["--log", "info"]);
    run.assert_ok();
    let expected: Vec<String> = (0..40)
        .filter(|n| n % 3 == 0)
        .map(|n| format!(r#"{{"n":{n},"twice":{}}}"#, n * 2))
        .collect();
    let delivered = match language {
        Language::JavaScript => logged(&run.stderr, ">> "),
        _ => scratch
            .read("out/result.jsonl")
            .lines()
            .map(str::to_string)
            .collect(),
    };
    assert_eq!(delivered, expected, "stderr:\n{}", run.stderr);
    assert_eq!(
        run.action(0)["records_out_total"],
        expected.len(),
        "{}",
        run.stdout
    );
}

#[test]
fn python_sink_runs_a_rule() {
    runs_a_rule(Language::Python);
}

#[test]
fn javascript_sink_runs_a_rule() {
    runs_a_rule(Language::JavaScript);
}

#[test]
fn c_sink_runs_a_rule() {
    runs_a_rule(Language::C);
}

#[test]
fn a_bad_prop_is_refused_naming_it_in_every_language() {
    for &language in Language::ALL {
        let Some(wasm) = built(language) else {
            continue;
        };
        let scratch = Scratch::new();
        scratch.install(
            language.plugin_name(),
            &wasm.display().to_string(),
            &language.manifest().display().to_string(),
        );
        scratch.write("streams.sql", crate::common::STDIN_STREAM);
        // A prop of the wrong type (the file sinks' only prop is a file the host checks
        // first, so they get an unknown one).
        let (props, field) = match language {
            Language::JavaScript => (serde_json::json!({"prefix": 7}), "prefix"),
            _ => (
                serde_json::json!({"path": "out/x.jsonl", "pathh": 1}),
                "pathh",
            ),
        };
        let rule = serde_json::json!({"id": "r", "sql": "SELECT * FROM s",
            "actions": [{language.action_key(): props}]});
        scratch.write("rule.json", &rule.to_string());
        let out = scratch
            .oort(&["validate", "rule.json", "--streams", "streams.sql"])
            .output()
            .expect("running oort");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{language}: validate accepted it");
        assert!(
            stderr.contains("invalid config") && stderr.contains(&format!("`{field}`")),
            "{language}: {stderr}"
        );
        if language != Language::JavaScript {
            assert!(
                stderr.contains("(did you mean `path`?)"),
                "{language}: {stderr}"
            );
        }
    }
}

/// The Python, JavaScript and C SDKs hand their sinks each message's dynamic values
/// (`oort:sink@0.2.0`): the Python and C sinks write to the file their templated `path` names,
/// the JavaScript one logs with its templated `prefix`.
#[test]
fn sdk_sinks_get_each_message_s_dynamic_values() {
    let rows =
        "{\"n\":0,\"device\":\"a\"}\n{\"n\":1,\"device\":\"b\"}\n{\"n\":2,\"device\":\"a\"}\n";
    for (language, props) in [
        (
            Language::Python,
            serde_json::json!({"path": "out/{{.device}}.jsonl"}),
        ),
        (
            Language::JavaScript,
            serde_json::json!({"prefix": "dev-{{.device}}> "}),
        ),
        (
            Language::C,
            serde_json::json!({"path": "out/{{.device}}.jsonl"}),
        ),
    ] {
        if built(language).is_none() {
            continue;
        }
        let scratch = Scratch::new();
        languages::install(language, &scratch.path().join("plugins")).expect("installing");
        scratch.write("in.jsonl", rows);
        scratch.write(
            "streams.sql",
            r#"CREATE STREAM s () WITH (TYPE="file", DATASOURCE="in.jsonl", FORMAT="json");"#,
        );
        let rule = serde_json::json!({"id": "r", "sql": "SELECT n, device FROM s",
            "actions": [{language.action_key(): props}]});
        scratch.write("rule.json", &rule.to_string());
        let run = scratch.run_rule(&["--log", "info"]);
        run.assert_ok();
        match language {
            Language::JavaScript => {
                let a = logged(&run.stderr, "dev-a> ");
                let b = logged(&run.stderr, "dev-b> ");
                assert_eq!((a.len(), b.len()), (2, 1), "{language}: {}", run.stderr);
                assert!(b[0].contains("\"n\":1"), "{b:?}");
            }
            _ => {
                let a = scratch.read("out/a.jsonl");
                let b = scratch.read("out/b.jsonl");
                assert_eq!(a.lines().count(), 2, "{language}: {a}");
                assert_eq!(b.lines().count(), 1, "{language}: {b}");
                assert!(b.contains("\"n\":1"), "{b}");
            }
        }
    }
}

#[test]
fn inspect_describes_each_language_sink() {
    for &language in Language::ALL {
        let Some(wasm) = built(language) else {
            continue;
        };
        let scratch = Scratch::new();
        scratch.install(
            language.plugin_name(),
            &wasm.display().to_string(),
            &language.manifest().display().to_string(),
        );
        let file = format!("plugins/sinks/{}.wasm", language.plugin_name());
        let out = scratch
            .oort(&["sink", "inspect", &file])
            .output()
            .expect("running oort");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{language}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let hash = blake3::hash(&std::fs::read(&wasm).expect("the build"))
            .to_hex()
            .to_string();
        assert!(stdout.contains(&format!("blake3:{hash}")), "{stdout}");
        assert!(stdout.contains("oort:sink/sink@0.2.0"), "{stdout}");
        assert!(stdout.contains("oort:sink: yes"), "{stdout}");
        if language != Language::JavaScript {
            assert!(
                stdout.contains("files:   the file named by prop `path` (write)"),
                "{stdout}"
            );
        }
    }
}

#[test]
fn inspect_refuses_what_is_not_a_sink() {
    let scratch = Scratch::new();
    scratch.write("text.wasm", "not wasm at all");
    let core = scratch.path().join("core.wasm");
    std::fs::File::create(&core)
        .and_then(|mut f| f.write_all(b"\0asm\x01\0\0\0"))
        .expect("a core module");
    let cases = [
        ("text.wasm", "not a WebAssembly file"),
        ("core.wasm", "a core WebAssembly module, not a component"),
        ("plugins/sinks/NotASink.wasm", "not an oort:sink component"),
    ];
    for (file, expected) in cases {
        let out = scratch
            .oort(&["sink", "inspect", file])
            .output()
            .expect("running oort");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file}: {stderr}");
        assert!(stderr.contains(expected), "{file}: {stderr}");
    }
}

#[test]
fn sink_new_scaffolds_a_project_that_builds() {
    let scratch = Scratch::new();
    for (lang, files) in [
        ("rust", &["Cargo.toml", "src/lib.rs", "README.md"][..]),
        (
            "python",
            &[
                "app.py",
                "oort_sink.py",
                "build.sh",
                "wit/sink.wit",
                "README.md",
            ],
        ),
        (
            "js",
            &[
                "sink.js",
                "oort.js",
                "package.json",
                "wit/sink.wit",
                "README.md",
            ],
        ),
        (
            "c",
            &[
                "sink.c",
                "oort_sink.h",
                "build.sh",
                "wasi_snapshot_preview1.reactor.wasm",
            ],
        ),
    ] {
        let name = format!("demo-{lang}");
        let out = scratch
            .oort(&["sink", "new", &name, "--lang", lang])
            .output()
            .expect("running oort");
        assert!(
            out.status.success(),
            "{lang}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for file in files {
            assert!(
                scratch.path().join(&name).join(file).is_file(),
                "{lang}: {file}"
            );
        }
        let readme = scratch.read(&format!("{name}/README.md"));
        assert!(
            readme.contains(&format!("Demo{}", capitalized(lang))),
            "{readme}"
        );
        // It says which toolchain to install, and how.
        let setup = match lang {
            "rust" => "rustup target add wasm32-wasip2",
            "python" => "pip install componentize-py==0.25.1",
            "js" => "apt-get install nodejs npm",
            _ => "apt-get install clang-16 lld-16 wasi-libc",
        };
        assert!(
            readme.contains("## Set up (once)") && readme.contains(setup),
            "{lang}: {readme}"
        );
        assert!(
            !readme.contains("{{"),
            "{lang}: a placeholder is left: {readme}"
        );
    }
    // A second time into the same folder is refused.
    let out = scratch
        .oort(&["sink", "new", "demo-c", "--lang", "c"])
        .output()
        .expect("running oort");
    assert!(!out.status.success());

    // The C scaffold builds (when its toolchain is there) into a sink that inspect accepts.
    let build = std::process::Command::new("sh")
        .arg("build.sh")
        .current_dir(scratch.path().join("demo-c"))
        .output();
    match build {
        Ok(out) if out.status.success() => {
            let out = scratch
                .oort(&["sink", "inspect", "demo-c/DemoC.wasm"])
                .output()
                .expect("running oort");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        other if languages::in_ci() => panic!("the C scaffold does not build: {other:?}"),
        other => eprintln!("SKIPPED: building the C scaffold: {other:?}"),
    }
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}
