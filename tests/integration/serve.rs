//! `oort serve` over real HTTP (curl): eKuiper's documented REST calls sent as they are, rules
//! reading a real MQTT broker, concurrent calls while rules run, and a restart of the server
//! process with running rules.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oort_tests::broker::{Broker, Subscriber, publish_all};
use serde_json::Value as Json;

use crate::common::{Scratch, collect_stderr, wait_for};

/// A running `oort serve` in a scratch folder.
pub(crate) struct Server {
    child: Child,
    pub(crate) port: u16,
    log: Arc<Mutex<String>>,
    /// The bearer token [`Server::call`] sends, for a server started with `--token-file`.
    token: Option<String>,
}

impl Server {
    /// Starts `oort serve` on a free loopback port with `extra` options, and waits until it
    /// accepts connections.
    pub(crate) fn start(scratch: &Scratch, extra: &[&str]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Self::start_on(scratch, port, extra)
    }

    pub(crate) fn start_on(scratch: &Scratch, port: u16, extra: &[&str]) -> Self {
        Self::start_with_env(scratch, port, extra, &[])
    }

    fn start_with_env(
        scratch: &Scratch,
        port: u16,
        extra: &[&str],
        env: &[(&str, &std::path::Path)],
    ) -> Self {
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["serve", "--listen", &listen, "--log", "info"];
        args.extend(extra);
        let mut child = scratch
            .oort(&args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting oort serve");
        let log = collect_stderr(&mut child);
        wait_for("the server to listen", Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Self {
            child,
            port,
            log,
            token: None,
        }
    }

    /// The same server, its calls sending `Authorization: Bearer <token>`.
    pub(crate) fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    /// `curl -X <method> <path> [-d body]`: the status and the body.
    pub(crate) fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-s", "-S", "-X", method, "-w", "\n%{http_code}", &url]);
        if let Some(token) = &self.token {
            cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        if let Some(body) = body {
            cmd.args(["-H", "Content-Type: application/json", "-d", body]);
        }
        let out = cmd.output().expect("running curl");
        assert!(out.status.success(), "curl failed: {out:?}");
        let text = String::from_utf8(out.stdout).expect("a UTF-8 answer");
        let (body, status) = text.rsplit_once('\n').expect("the status line");
        (status.parse().expect("an HTTP status"), body.to_string())
    }

    pub(crate) fn json(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Json) {
        let (status, text) = self.call(method, path, body);
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
        (status, json)
    }

    /// Waits until the server's log says `needle` `count` times.
    pub(crate) fn wait_log(&self, needle: &str, count: usize) {
        wait_for(
            &format!("{count} × `{needle}`"),
            Duration::from_secs(30),
            || self.log.lock().unwrap().matches(needle).count() >= count,
        );
    }

    /// `POST /streams` with `sql`: the stream must be created.
    pub(crate) fn create_stream(&self, sql: &str) {
        let body = serde_json::json!({ "sql": sql }).to_string();
        let (status, text) = self.call("POST", "/streams", Some(&body));
        assert_eq!(status, 201, "{text}");
    }

    /// `POST /rules` with `rule`: it must be refused (400), the answer naming each of `named`.
    pub(crate) fn refuses_rule(&self, rule: &str, named: &[&str]) {
        let (status, text) = self.call("POST", "/rules", Some(rule));
        assert_eq!(status, 400, "{text}");
        for name in named {
            assert!(text.contains(name), "`{name}` not named: {text}");
        }
    }

    pub(crate) fn wait_status(&self, id: &str, status: &str) {
        wait_for(
            &format!("rule {id} to be {status}"),
            Duration::from_secs(30),
            || self.json("GET", &format!("/rules/{id}/status"), None).1["status"] == status,
        );
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, and waits for a clean exit (a minute at most: a server that does not stop is
    /// killed and the test fails).
    pub(crate) fn stop(mut self) -> String {
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let asked = std::time::Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if asked.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let log = self.log.lock().unwrap().clone();
                panic!("the server did not stop within 60 s of SIGTERM\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = self.log.lock().unwrap().clone();
        assert!(status.success(), "{status:?}\n{log}");
        log
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch folder whose MQTT configuration points at `broker`.
pub(crate) fn scratch_for(broker: &Broker) -> Scratch {
    let scratch = Scratch::new();
    scratch.write(
        "etc/mqtt_source.yaml",
        &format!("default:\n  qos: 1\n  server: \"{}\"\n", broker.url()),
    );
    scratch
}

/// A scratch folder whose MQTT source configuration's `default` points at a closed port (so
/// only what is given over the API reaches a broker), and the options that read it.
fn scratch_with_a_closed_default() -> (Scratch, [&'static str; 2]) {
    let scratch = Scratch::new();
    scratch.write(
        "etc/mqtt_source.yaml",
        "default:\n  qos: 1\n  server: \"tcp://127.0.0.1:1\"\n",
    );
    (scratch, ["--mqtt-conf", "etc/mqtt_source.yaml"])
}

pub(crate) fn numbers(range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    range
        .map(|n| format!("{{\"n\":{n}}}").into_bytes())
        .collect()
}

/// The rule of these tests: `SELECT n FROM <stream>` into the built-in MQTT sink.
fn relay_rule(id: &str, stream: &str, broker: &Broker, topic: &str) -> String {
    format!(
        r#"{{"id":"{id}","sql":"SELECT n FROM {stream}","actions":[{{"mqtt":{{"server":"{}","topic":"{topic}","qos":1}}}}]}}"#,
        broker.url()
    )
}

/// Creates `rule` (which reads `from` and publishes to `to` on `broker`) and checks that ten
/// rows published to `from` arrive at `to`, every one.
fn relays_ten(server: &Server, broker: &Broker, rule: &str, from: &str, to: &str) {
    let client = format!("verify-serve-{}", to.replace('/', "-"));
    let out = Subscriber::new(broker.port, &client, to);
    let (status, text) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{text}");
    server.wait_log("subscribed to", 1);
    publish_all(broker.port, from, numbers(0..10));
    let got = out.collect_until(Duration::from_secs(30), |g| ns(g).len() >= 10);
    assert_eq!(ns(&got), (0..10).collect());
}

fn ns(got: &[(String, Vec<u8>)]) -> std::collections::BTreeSet<u64> {
    got.iter()
        .map(|(_, p)| {
            serde_json::from_slice::<Json>(p).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn ekuiper_rest_calls_manage_streams_and_rules() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let scratch = scratch_for(&broker);
    let server = Server::start(&scratch, &["--mqtt-conf", "etc/mqtt_source.yaml"]);

    let (status, info) = server.json("GET", "/", None);
    assert_eq!(status, 200);
    assert!(
        info["upTimeSeconds"].is_u64() && info["version"].is_string(),
        "{info}"
    );
    assert_eq!(server.call("GET", "/ping", None).0, 200);

    // eKuiper's documented stream example, as it is.
    let stream = r#"{"sql":"create stream my_stream (id bigint, name string, score float) WITH ( datasource = \"topic/temperature\", FORMAT = \"json\", KEY = \"id\")"}"#;
    assert_eq!(
        server.call("POST", "/streams", Some(stream)),
        (201, "Stream my_stream is created.".into())
    );
    let (status, err) = server.json("POST", "/streams", Some(stream));
    assert_eq!(status, 409, "{err}");
    assert_eq!(
        server.json("GET", "/streams", None).1,
        serde_json::json!(["my_stream"])
    );
    let (_, described) = server.json("GET", "/streams/my_stream", None);
    assert_eq!(described["Name"], "my_stream");
    assert_eq!(described["Options"]["DATASOURCE"], "topic/temperature");
    assert_eq!(described["StreamFields"][2]["Name"], "score");
    let (status, err) = server.json(
        "POST",
        "/streams",
        Some(r#"{"sql":"create stream bad (id bigint WITH (datasource = \"x\")"}"#),
    );
    assert_eq!(status, 400);
    assert!(
        err["message"].as_str().unwrap().contains("line 1, column"),
        "{err}"
    );
    assert_eq!(err["error"], 1000);
    let update = r#"{"sql":"create stream my_stream (n bigint) WITH ( datasource = \"in/n\", FORMAT = \"json\")"}"#;
    assert_eq!(
        server.call("PUT", "/streams/my_stream", Some(update)),
        (200, "Stream my_stream is updated.".into())
    );
    assert_eq!(server.json("GET", "/streams/nope", None).0, 404);

    // A rule: created and started, listed with its status, its metrics under eKuiper's keys.
    let out = Subscriber::new(broker.port, "verify-serve-api", "out/api");
    let rule = relay_rule("rule1", "my_stream", &broker, "out/api");
    assert_eq!(
        server.call("POST", "/rules", Some(&rule)),
        (201, "Rule rule1 was created successfully.".into())
    );
    assert_eq!(server.json("POST", "/rules", Some(&rule)).0, 409);
    server.wait_log("subscribed to", 1);
    server.wait_status("rule1", "running");
    let (_, rules) = server.json("GET", "/rules", None);
    assert_eq!(rules[0]["id"], "rule1");
    assert_eq!(rules[0]["status"], "Running");
    publish_all(broker.port, "in/n", numbers(0..50));
    let got = out.collect_until(Duration::from_secs(30), |g| ns(g).len() >= 50);
    assert_eq!(ns(&got), (0..50).collect());
    wait_for(
        "the status to count 50 rows",
        Duration::from_secs(10),
        || {
            server.json("GET", "/rules/rule1/status", None).1["sink_mqtt_0_0_records_out_total"]
                == 50
        },
    );
    let (_, status) = server.json("GET", "/rules/rule1/status", None);
    assert_eq!(
        status["source_my_stream_0_records_in_total"], 50,
        "{status}"
    );
    assert_eq!(status["op_project_0_records_out_total"], 50, "{status}");
    assert_eq!(
        server.json("GET", "/rules/rule1/topo", None).1,
        serde_json::json!({
            "sources": ["source_my_stream"],
            "edges": {"source_my_stream": ["op_project"], "op_project": ["sink_mqtt_0"]}
        })
    );
    let (_, described) = server.json("GET", "/rules/rule1", None);
    assert_eq!(described["sql"], "SELECT n FROM my_stream");

    // Stop, start, restart.
    assert_eq!(
        server.call("POST", "/rules/rule1/stop", None),
        (200, "Rule rule1 was stopped.".into())
    );
    let (_, rules) = server.json("GET", "/rules", None);
    assert_eq!(rules[0]["status"], "Stopped: canceled manually.");
    assert_eq!(
        server.call("POST", "/rules/rule1/start", None),
        (200, "Rule rule1 was started".into())
    );
    server.wait_status("rule1", "running");
    assert_eq!(
        server.call("POST", "/rules/rule1/restart", None),
        (200, "Rule rule1 was restarted".into())
    );
    server.wait_status("rule1", "running");

    // Errors: eKuiper-shaped, with a status that fits.
    let (status, err) = server.json("GET", "/rules/nope/status", None);
    assert_eq!((status, err["error"].as_u64()), (404, Some(1002)), "{err}");
    assert_eq!(server.json("POST", "/rules/nope/start", None).0, 404);
    let (status, err) = server.json(
        "POST",
        "/rules",
        Some(r#"{"id":"bad","sql":"SELECT n FROM my_stream WHERE","actions":[{"log":{}}]}"#),
    );
    assert_eq!(status, 400);
    let message = err["message"].as_str().unwrap();
    assert!(message.contains("line 1, column"), "{message}");
    assert!(
        !message.contains(".rule-"),
        "the message names no file: {message}"
    );
    let (status, err) = server.json(
        "POST",
        "/rules",
        Some(r#"{"id":"bad","sql":"SELECT n FROM nowhere","actions":[{"log":{}}]}"#),
    );
    assert_eq!(status, 400, "{err}");
    let (status, valid) = server.json(
        "POST",
        "/rules/validate",
        Some(r#"{"id":"v","sql":"SELECT n FROM my_stream","actions":[{"log":{}}]}"#),
    );
    assert_eq!(status, 200);
    assert_eq!(
        valid,
        serde_json::json!({"valid": true, "sources": ["my_stream"]})
    );
    let (status, _) = server.call(
        "POST",
        "/rules/validate",
        Some(r#"{"id":"v","sql":"SELECT FROM","actions":[{"log":{}}]}"#),
    );
    assert_eq!(status, 422);

    // Dropping a running rule stops it first; the stream goes too.
    assert_eq!(
        server.call("DELETE", "/rules/rule1", None),
        (200, "Rule rule1 is dropped.".into())
    );
    assert_eq!(server.json("GET", "/rules", None).1, serde_json::json!([]));
    assert_eq!(
        server.call("DELETE", "/streams/my_stream", None),
        (200, "Stream my_stream is dropped.".into())
    );
    server.stop();
}

#[test]
fn a_rule_that_stops_leaves_the_others_running() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let scratch = scratch_for(&broker);
    scratch.write("data/short.jsonl", "{\"n\":1}\n{\"n\":2}\n");
    let server = Server::start(&scratch, &["--mqtt-conf", "etc/mqtt_source.yaml"]);
    let created = |sql: &str| {
        server.call(
            "POST",
            "/streams",
            Some(&serde_json::json!({ "sql": sql }).to_string()),
        )
    };
    assert_eq!(
        created("CREATE STREAM live (n bigint) WITH (DATASOURCE=\"in/live\")").0,
        201
    );
    // Relative paths start at the data directory.
    assert_eq!(
        created("CREATE STREAM short (n bigint) WITH (TYPE=\"file\", DATASOURCE=\"short.jsonl\")")
            .0,
        201
    );
    let out = Subscriber::new(broker.port, "verify-serve-isolated", "out/live");
    assert_eq!(
        server
            .call(
                "POST",
                "/rules",
                Some(&relay_rule("live", "live", &broker, "out/live"))
            )
            .0,
        201
    );
    server.wait_log("subscribed to", 1);
    let short = r#"{"id":"short","sql":"SELECT n FROM short","actions":[{"nop":{}}]}"#;
    assert_eq!(server.call("POST", "/rules", Some(short)).0, 201);
    server.wait_status("short", "stopped");
    let (_, status) = server.json("GET", "/rules/short/status", None);
    assert_eq!(status["message"], "the input ended.", "{status}");
    assert_eq!(status["sink_nop_0_0_records_in_total"], 2, "{status}");
    let (_, rules) = server.json("GET", "/rules", None);
    assert_eq!(rules[0]["status"], "Running", "{rules}");
    assert_eq!(rules[1]["status"], "Stopped: the input ended.", "{rules}");
    publish_all(broker.port, "in/live", numbers(0..20));
    let got = out.collect_until(Duration::from_secs(30), |g| ns(g).len() >= 20);
    assert_eq!(ns(&got), (0..20).collect());
    server.stop();
}

/// The value of an unlabelled gauge in the `/metrics` text.
/// An idle rule keeps no sink instance: the instance that started the action (configured and
/// opened, so the sink's errors at start are reported when the rule is created) is closed, and
/// the first row makes the one that delivers, as the same start of the action (generation 0).
#[test]
fn an_idle_rule_keeps_no_sink_instance_until_its_first_row() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let scratch = scratch_for(&broker);
    let server = Server::start(&scratch, &["--mqtt-conf", "etc/mqtt_source.yaml"]);
    server.create_stream("CREATE STREAM idle (n bigint) WITH (DATASOURCE=\"in/idle\")");
    let journal = scratch.path().join("out/journal.txt");
    let rule = serde_json::json!({"id": "idle", "sql": "SELECT n FROM idle",
        "actions": [{"probe": {"journal": journal}}]});
    let (status, text) = server.call("POST", "/rules", Some(&rule.to_string()));
    assert_eq!(status, 201, "{text}");
    server.wait_log("subscribed to", 1);
    let read = || std::fs::read_to_string(&journal).unwrap_or_default();
    wait_for(
        "the starting instance to close",
        Duration::from_secs(30),
        || read().ends_with("close gen=0 inst=0\n"),
    );
    assert_eq!(read(), "open gen=0 inst=0\nclose gen=0 inst=0\n");
    assert_eq!(
        server.json("GET", "/rules/idle/status", None).1["status"],
        "running"
    );

    publish_all(broker.port, "in/idle", numbers(0..1));
    // A line is whole once its newline is written.
    wait_for("the first batch", Duration::from_secs(30), || {
        let journal = read();
        journal.contains("collect") && journal.ends_with('\n')
    });
    assert_eq!(
        read(),
        "open gen=0 inst=0\nclose gen=0 inst=0\nopen gen=0 inst=0\n\
         collect n=1 {\"n\":0} gen=0 inst=0\n"
    );
    let status = server.json("GET", "/rules/idle/status", None).1;
    assert_eq!(status["sink_probe_0_0_records_out_total"], 1, "{status}");
    assert_eq!(status["sink_probe_0_0_exceptions_total"], 0, "{status}");
    let log = server.stop();
    assert!(
        read().ends_with("close gen=0 inst=0\n"),
        "{}\n{log}",
        read()
    );
}

fn gauge(server: &Server, name: &str) -> Option<u64> {
    let (_, text) = server.call("GET", "/metrics", None);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn rules_chain_through_memory_topics_whatever_their_order() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let scratch = scratch_for(&broker);
    let server = Server::start(&scratch, &["--mqtt-conf", "etc/mqtt_source.yaml"]);
    for sql in [
        "CREATE STREAM live (n bigint) WITH (DATASOURCE=\"in/chain\")",
        "CREATE STREAM chained (n bigint) WITH (TYPE=\"memory\", DATASOURCE=\"chain/+\")",
    ] {
        let body = serde_json::json!({ "sql": sql }).to_string();
        assert_eq!(server.call("POST", "/streams", Some(&body)).0, 201);
    }
    let out = Subscriber::new(broker.port, "verify-serve-chain", "out/chain");
    // The reader first: its memory stream waits for a writer that does not exist yet.
    assert_eq!(
        server
            .call(
                "POST",
                "/rules",
                Some(&relay_rule("reader", "chained", &broker, "out/chain"))
            )
            .0,
        201
    );
    server.wait_status("reader", "running");
    assert_eq!(gauge(&server, "oort_memory_subscriptions"), Some(1));
    let writer =
        r#"{"id":"writer","sql":"SELECT n FROM live","actions":[{"memory":{"topic":"chain/a"}}]}"#;
    assert_eq!(server.call("POST", "/rules", Some(writer)).0, 201);
    server.wait_log("subscribed to", 1);
    publish_all(broker.port, "in/chain", numbers(0..20));
    let got = out.collect_until(Duration::from_secs(30), |g| ns(g).len() >= 20);
    assert_eq!(ns(&got), (0..20).collect());

    // The writer stops and starts again: the reader, still running, gets its new rows.
    assert_eq!(server.call("POST", "/rules/writer/stop", None).0, 200);
    server.wait_status("writer", "stopped");
    assert_eq!(
        server.json("GET", "/rules/reader/status", None).1["status"],
        "running"
    );
    assert_eq!(server.call("POST", "/rules/writer/start", None).0, 200);
    server.wait_log("subscribed to", 2);
    publish_all(broker.port, "in/chain", numbers(20..40));
    let got = out.collect_until(Duration::from_secs(30), |g| ns(g).len() >= 20);
    assert_eq!(ns(&got), (20..40).collect());

    // The reader is dropped: its subscription goes with it, and the writer goes on alone.
    assert_eq!(server.call("DELETE", "/rules/reader", None).0, 200);
    assert_eq!(gauge(&server, "oort_memory_subscriptions"), Some(0));
    publish_all(broker.port, "in/chain", numbers(40..3040));
    wait_for(
        "the writer to hand on all 3,000 rows",
        Duration::from_secs(60),
        || {
            server.json("GET", "/rules/writer/status", None).1["sink_memory_0_0_records_out_total"]
                == 3020
        },
    );
    server.stop();
}

#[test]
fn concurrent_calls_while_rules_run() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let scratch = scratch_for(&broker);
    let server = Arc::new(Server::start(
        &scratch,
        &["--mqtt-conf", "etc/mqtt_source.yaml"],
    ));
    let stream = r#"{"sql":"CREATE STREAM s (n bigint) WITH (DATASOURCE=\"in/c\")"}"#;
    assert_eq!(server.call("POST", "/streams", Some(stream)).0, 201);
    let out = Subscriber::new(broker.port, "verify-serve-concurrent", "out/c");
    assert_eq!(
        server
            .call(
                "POST",
                "/rules",
                Some(&relay_rule("main", "s", &broker, "out/c"))
            )
            .0,
        201
    );
    server.wait_log("subscribed to", 1);
    let total = 2000;
    let publisher = {
        let port = broker.port;
        std::thread::spawn(move || {
            for chunk in (0..total).collect::<Vec<_>>().chunks(100) {
                publish_all(port, "in/c", numbers(chunk[0]..chunk[0] + chunk.len()));
            }
        })
    };
    // Four clients create, inspect, stop and drop rules of their own while rows flow.
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let server = Arc::clone(&server);
            std::thread::spawn(move || {
                for i in 0..5 {
                    let id = format!("c{c}_{i}");
                    let rule = format!(
                        r#"{{"id":"{id}","sql":"SELECT n FROM s WHERE n < 0","actions":[{{"nop":{{}}}}]}}"#
                    );
                    assert_eq!(server.call("POST", "/rules", Some(&rule)).0, 201);
                    assert_eq!(server.json("GET", &format!("/rules/{id}/status"), None).0, 200);
                    assert_eq!(server.json("GET", "/rules", None).0, 200);
                    assert_eq!(server.call("POST", &format!("/rules/{id}/stop"), None).0, 200);
                    assert_eq!(server.call("DELETE", &format!("/rules/{id}"), None).0, 200);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    publisher.join().unwrap();
    let got = out.collect_until(Duration::from_secs(60), |g| ns(g).len() >= total);
    assert_eq!(ns(&got).len(), total, "rows lost while the API was busy");
    let (_, rules) = server.json("GET", "/rules", None);
    assert_eq!(rules.as_array().unwrap().len(), 1, "{rules}");
    assert_eq!(rules[0]["status"], "Running");
}

#[test]
fn running_rules_run_again_after_a_server_restart() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let scratch = scratch_for(&broker);
    let server = Server::start(&scratch, &["--mqtt-conf", "etc/mqtt_source.yaml"]);
    let port = server.port;
    let stream = r#"{"sql":"CREATE STREAM s (n bigint) WITH (DATASOURCE=\"in/r\")"}"#;
    assert_eq!(server.call("POST", "/streams", Some(stream)).0, 201);
    let out = Subscriber::new(broker.port, "verify-serve-restart", "out/r");
    assert_eq!(
        server
            .call(
                "POST",
                "/rules",
                Some(&relay_rule("keep", "s", &broker, "out/r"))
            )
            .0,
        201
    );
    assert_eq!(
        server
            .call(
                "POST",
                "/rules",
                Some(&relay_rule("idle", "s", &broker, "out/idle"))
            )
            .0,
        201
    );
    server.wait_log("subscribed to", 2);
    assert_eq!(server.call("POST", "/rules/idle/stop", None).0, 200);
    publish_all(broker.port, "in/r", numbers(0..10));
    let got = out.collect_until(Duration::from_secs(30), |g| ns(g).len() >= 10);
    assert_eq!(ns(&got), (0..10).collect());
    server.stop();

    let server = Server::start_on(&scratch, port, &["--mqtt-conf", "etc/mqtt_source.yaml"]);
    assert_eq!(
        server.json("GET", "/streams", None).1,
        serde_json::json!(["s"])
    );
    server.wait_status("keep", "running");
    server.wait_log("subscribed to", 1);
    let (_, rules) = server.json("GET", "/rules", None);
    assert_eq!(
        rules,
        serde_json::json!([
            {"id": "idle", "name": "idle", "status": "Stopped: canceled manually.", "tags": null},
            {"id": "keep", "name": "keep", "status": "Running", "tags": null},
        ])
    );
    publish_all(broker.port, "in/r", numbers(10..20));
    let got = out.collect_until(Duration::from_secs(30), |g| ns(g).len() >= 10);
    assert_eq!(ns(&got), (10..20).collect());
    server.stop();
}

/// The `n` of every row the versioned sink wrote, with the build that wrote it.
fn versioned_rows(path: &std::path::Path) -> Vec<(String, u64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .map(|v| {
            (
                v["v"].as_str().unwrap_or_default().to_string(),
                v["m"]["n"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

#[test]
fn a_plugin_update_under_load_hot_reloads_without_losing_a_row() {
    use oort_tests::guests;
    let Some(broker) = Broker::start() else {
        return;
    };
    let scratch = scratch_for(&broker);
    for (dir, wasm, manifest) in [
        ("v1", guests::VERSIONED_V1, guests::VERSIONED_V1_MANIFEST),
        ("v2", guests::VERSIONED_V2, guests::VERSIONED_V2_MANIFEST),
        (
            "bad",
            guests::VERSIONED_BAD_CONFIG,
            guests::VERSIONED_BAD_CONFIG_MANIFEST,
        ),
        ("wrong", guests::NOT_A_SINK, guests::NOT_A_SINK_MANIFEST),
    ] {
        std::fs::create_dir_all(scratch.path().join(dir)).unwrap();
        std::fs::copy(wasm, scratch.path().join(dir).join("Versioned.wasm")).unwrap();
        if std::path::Path::new(manifest).is_file() {
            std::fs::copy(manifest, scratch.path().join(dir).join("Versioned.json")).unwrap();
        }
    }
    let file = |dir: &str| {
        format!(
            r#"{{"name":"Versioned","file":"file://{}/{dir}/Versioned.wasm"}}"#,
            scratch.path().display()
        )
    };
    let server = Server::start(&scratch, &["--mqtt-conf", "etc/mqtt_source.yaml"]);
    assert_eq!(
        server.call("POST", "/plugins/sinks", Some(&file("v1"))),
        (201, "Plugin Versioned is created.".into())
    );
    let (_, plugins) = server.json("GET", "/plugins/sinks", None);
    assert!(
        plugins
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("Versioned")),
        "{plugins}"
    );
    let (_, described) = server.json("GET", "/plugins/sinks/Versioned", None);
    assert!(described["manifest"].is_object(), "{described}");
    assert!(
        described["inspect"]
            .as_str()
            .unwrap()
            .contains("oort:sink: yes"),
        "{described}"
    );
    // A component of another world is refused before anything changes.
    let (status, err) = server.json("PUT", "/plugins/sinks/Versioned", Some(&file("wrong")));
    assert_eq!(status, 400, "{err}");

    let stream = r#"{"sql":"CREATE STREAM s (n bigint) WITH (DATASOURCE=\"in/v\")"}"#;
    assert_eq!(server.call("POST", "/streams", Some(stream)).0, 201);
    let rule =
        r#"{"id":"live","sql":"SELECT n FROM s","actions":[{"versioned":{"path":"out/v.jsonl"}}]}"#;
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    server.wait_log("subscribed to", 1);

    let total = 3000;
    let port = broker.port;
    let publisher = std::thread::spawn(move || {
        for start in (0..total).step_by(50) {
            publish_all(port, "in/v", numbers(start..start + 50));
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let out = scratch.path().join("data/out/v.jsonl");
    let seen = |v: &str| versioned_rows(&out).iter().any(|(x, _)| x == v);
    wait_for("rows from v1", Duration::from_secs(30), || seen("v1"));
    let (status, answer) = server.json("PUT", "/plugins/sinks/Versioned", Some(&file("v2")));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["reloaded"][0]["rule"], "live", "{answer}");
    assert_eq!(answer["refused"], serde_json::json!([]), "{answer}");
    wait_for("rows from v2", Duration::from_secs(30), || seen("v2"));
    // A build that refuses its props: the rule says why and keeps v2.
    let (status, answer) = server.json("POST", "/plugins/sinks", Some(&file("bad")));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["refused"][0]["rule"], "live", "{answer}");
    assert!(
        answer["refused"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("configure failed"),
        "{answer}"
    );
    publisher.join().unwrap();
    wait_for("every row", Duration::from_secs(60), || {
        versioned_rows(&out).len() >= total
    });
    let rows = versioned_rows(&out);
    let ns: Vec<u64> = rows.iter().map(|(_, n)| *n).collect();
    assert_eq!(
        ns,
        (0..total as u64).collect::<Vec<_>>(),
        "rows lost or reordered"
    );
    assert!(rows.iter().all(|(v, _)| v == "v1" || v == "v2"));
    server.stop();
}

/// Sends `signal` (`HUP`, `USR1`) to the server.
fn signal(server: &Server, signal: &str) {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

#[test]
fn the_server_listens_to_signals_once_for_every_rule() {
    use oort_tests::guests;
    let scratch = Scratch::new();
    let module = scratch.path().join("plugins/sinks/Versioned.wasm");
    std::fs::copy(guests::VERSIONED_V1, &module).unwrap();
    std::fs::copy(guests::VERSIONED_V1_MANIFEST, module.with_extension("json")).unwrap();
    let server = Server::start(&scratch, &[]);
    let stream =
        r#"{"sql":"CREATE STREAM idle (n bigint) WITH (TYPE=\"memory\", DATASOURCE=\"idle\")"}"#;
    assert_eq!(server.call("POST", "/streams", Some(stream)).0, 201);
    for id in ["a", "b"] {
        let rule = format!(
            r#"{{"id":"{id}","sql":"SELECT n FROM idle","actions":[{{"versioned":{{"path":"out/{id}.jsonl"}}}}]}}"#
        );
        assert_eq!(server.call("POST", "/rules", Some(&rule)).0, 201);
        server.wait_status(id, "running");
    }
    // SIGUSR1 logs every running rule's counters, and the server goes on.
    signal(&server, "USR1");
    server.wait_log(": rule a: 0 rows read", 1);
    server.wait_log(": rule b: 0 rows read", 1);
    assert_eq!(server.call("GET", "/ping", None).0, 200);
    // SIGHUP hands a new build of a module to every running rule that uses it.
    std::fs::copy(guests::VERSIONED_V2, &module).unwrap();
    signal(&server, "HUP");
    server.wait_log("new sink build handed to its actions", 2);
    let log = server.stop();
    assert_eq!(
        log.matches("SIGHUP: checking every running rule's sink modules")
            .count(),
        1,
        "one listener for the server, none per rule: {log}"
    );
    assert!(!log.contains("SIGHUP: checking sink modules"), "{log}");
    assert_eq!(log.matches("progress after").count(), 2, "{log}");
}

#[test]
fn metrics_in_prometheus_text_with_ekuipers_names() {
    let scratch = Scratch::new();
    scratch.write("data/rows.jsonl", "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n");
    let server = Server::start(&scratch, &[]);
    let stream = r#"{"sql":"CREATE STREAM rows (n bigint) WITH (TYPE=\"file\", DATASOURCE=\"rows.jsonl\")"}"#;
    assert_eq!(server.call("POST", "/streams", Some(stream)).0, 201);
    let rule = r#"{"id":"m","sql":"SELECT n FROM rows WHERE n > 1","actions":[{"nop":{}}]}"#;
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    server.wait_status("m", "stopped");
    let (status, text) = server.call("GET", "/metrics", None);
    assert_eq!(status, 200);
    for line in [
        r#"kuiper_source_records_in_total{rule="m",type="source",op="source_rows",op_instance="0"} 3"#,
        r#"kuiper_op_records_out_total{rule="m",type="op",op="op_project",op_instance="0"} 2"#,
        r#"kuiper_sink_records_out_total{rule="m",type="sink",op="sink_nop_0",op_instance="0"} 2"#,
        r#"oort_sink_failed_total{rule="m",type="sink",op="sink_nop_0",op_instance="0"} 0"#,
        r#"oort_op_filtered_total{rule="m",type="op",op="op_project",op_instance="0"} 1"#,
        r#"oort_rule_running{rule="m"} 0"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert_eq!(server.call("GET", "/healthz", None).0, 200);
    assert_eq!(server.call("GET", "/readyz", None).0, 200);
}

/// A rule whose file input ends with an event-time window still open sends nothing more (as
/// eKuiper) and says what it left in its status and `/metrics`.
#[test]
fn the_windows_open_at_the_end_of_the_input_are_counted_in_status_and_metrics() {
    let scratch = Scratch::new();
    scratch.write(
        "data/ticks.jsonl",
        "{\"n\":1,\"ts\":1000}\n{\"n\":2,\"ts\":12000}\n{\"n\":3,\"ts\":13000}\n",
    );
    let server = Server::start(&scratch, &[]);
    let stream = r#"{"sql":"CREATE STREAM ticks (n bigint, ts bigint) WITH (TYPE=\"file\", DATASOURCE=\"ticks.jsonl\", TIMESTAMP=\"ts\")"}"#;
    assert_eq!(server.call("POST", "/streams", Some(stream)).0, 201);
    let rule = r#"{"id":"w","sql":"SELECT count(*) AS c FROM ticks GROUP BY TUMBLINGWINDOW(ss, 10)","actions":[{"nop":{}}],"options":{"isEventTime":true,"lateTolerance":0}}"#;
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    server.wait_status("w", "stopped");
    let (_, status) = server.json("GET", "/rules/w/status", None);
    // [0, 10000) fired at 12000; [10000, 20000) holds 12000 and 13000.
    assert_eq!(status["sink_nop_0_0_records_in_total"], 1, "{status}");
    assert_eq!(status["op_project_0_windows_open_at_end"], 1, "{status}");
    assert_eq!(status["op_project_0_rows_held_at_end"], 2, "{status}");
    let (_, text) = server.call("GET", "/metrics", None);
    for line in [
        r#"oort_op_windows_open_at_end_total{rule="w",type="op",op="op_project",op_instance="0"} 1"#,
        r#"oort_op_rows_held_at_end_total{rule="w",type="op",op="op_project",op_instance="0"} 2"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
}

#[test]
fn a_non_loopback_address_requires_bearer_tokens() {
    let scratch = Scratch::new();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let listen = format!("0.0.0.0:{port}");
    // Without a token file the server refuses to start.
    let out = scratch
        .oort(&["serve", "--listen", &listen])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--token-file"), "{stderr}");

    scratch.write("tokens", "# operators\nsecret-one\n\nsecret-two\n");
    let mut child = scratch
        .oort(&["serve", "--listen", &listen, "--token-file", "tokens"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the server to listen", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let call = |auth: Option<&str>, path: &str| {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}"]);
        if let Some(token) = auth {
            cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        let out = cmd
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(call(None, "/rules"), "401");
    assert_eq!(call(Some("wrong"), "/rules"), "401");
    assert_eq!(call(Some("secret-two"), "/rules"), "200");
    assert_eq!(call(Some("secret-one"), "/metrics"), "200");
    assert_eq!(call(None, "/healthz"), "200");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_grant_ceiling_refuses_rules_that_exceed_it() {
    let scratch = Scratch::new();
    std::fs::create_dir_all(scratch.path().join("allowed")).unwrap();
    scratch.write("data/rows.jsonl", "{\"n\":1}\n");
    let server = Server::start(
        &scratch,
        &[
            "--allow-path",
            "allowed",
            "--allow-net",
            "127.0.0.1:1883",
            "--allow-mqtt-topic",
            "out/#",
        ],
    );
    let stream = r#"{"sql":"CREATE STREAM rows (n bigint) WITH (TYPE=\"file\", DATASOURCE=\"rows.jsonl\")"}"#;
    assert_eq!(server.call("POST", "/streams", Some(stream)).0, 201);
    let rule = |id: &str, action: &str| {
        format!(r#"{{"id":"{id}","sql":"SELECT n FROM rows","actions":[{action}]}}"#)
    };
    // A file outside the allowed folder (relative paths start at the data directory).
    let (status, err) = server.json(
        "POST",
        "/rules",
        Some(&rule("outside", r#"{"file":{"path":"out.jsonl"}}"#)),
    );
    assert_eq!(status, 403, "{err}");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains("--allow-path") && message.contains("allowed"),
        "{message}"
    );
    // The built-in MQTT sink: a broker and a topic outside the ceiling.
    let (status, err) = server.json(
        "POST",
        "/rules",
        Some(&rule(
            "broker",
            r#"{"mqtt":{"server":"tcp://127.0.0.1:1884","topic":"out/x"}}"#,
        )),
    );
    assert_eq!(status, 403, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("--allow-net"),
        "{err}"
    );
    let (status, err) = server.json(
        "POST",
        "/rules",
        Some(&rule(
            "topic",
            r#"{"mqtt":{"server":"tcp://127.0.0.1:1883","topic":"secret/x"}}"#,
        )),
    );
    assert_eq!(status, 403, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("--allow-mqtt-topic"),
        "{err}"
    );
    assert_eq!(server.json("GET", "/rules", None).1, serde_json::json!([]));
    // Within the ceiling: created, and it runs.
    let inside = format!(
        r#"{{"file":{{"path":"{}/allowed/out.jsonl"}}}}"#,
        scratch.path().display()
    );
    assert_eq!(
        server
            .call("POST", "/rules", Some(&rule("inside", &inside)))
            .0,
        201
    );
    server.wait_status("inside", "stopped");
    wait_for(
        "the row in the allowed folder",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(scratch.path().join("allowed/out.jsonl"))
                .is_ok_and(|t| t.contains("\"n\":1"))
        },
    );
}

#[test]
fn the_cli_client_talks_to_the_server_like_kuiper() {
    let scratch = Scratch::new();
    scratch.write("data/rows.jsonl", "{\"n\":1}\n{\"n\":2}\n");
    let server = Server::start(&scratch, &[]);
    let host = format!("127.0.0.1:{}", server.port);
    let oort = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--host", &host]);
        let out = scratch.oort(&all).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = oort(&[
        "create",
        "stream",
        "CREATE STREAM rows (n bigint) WITH (TYPE=\"file\", DATASOURCE=\"rows.jsonl\")",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "Stream rows is created.");
    scratch.write(
        "rule.json",
        r#"{"sql":"SELECT n FROM rows","actions":[{"nop":{}}]}"#,
    );
    let (ok, out, err) = oort(&["create", "rule", "r1", "-f", "rule.json"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "Rule r1 was created successfully.");
    server.wait_status("r1", "stopped");
    let (ok, out, _) = oort(&["show", "rules"]);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Json>(&out).unwrap()[0]["id"], "r1");
    let (ok, out, _) = oort(&["getstatus", "rule", "r1"]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Json>(&out).unwrap()["sink_nop_0_0_records_in_total"],
        2
    );
    let (ok, out, _) = oort(&["describe", "rule", "r1"]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Json>(&out).unwrap()["sql"],
        "SELECT n FROM rows"
    );
    for (verb, answer) in [
        ("stop", "Rule r1 was stopped."),
        ("start", "Rule r1 was started"),
        ("restart", "Rule r1 was restarted"),
        ("drop", "Rule r1 is dropped."),
    ] {
        let (ok, out, err) = oort(&[verb, "rule", "r1"]);
        assert!(ok, "{verb}: {err}");
        assert_eq!(out.trim(), answer);
    }
    let (ok, _, err) = oort(&["drop", "rule", "r1"]);
    assert!(!ok);
    assert!(
        err.contains("404") && err.contains("rule r1 not found"),
        "{err}"
    );
    scratch.write(
        "set.json",
        r#"{"rules":{"r2":"{\"id\":\"r2\",\"sql\":\"SELECT n FROM rows\",\"actions\":[{\"nop\":{}}]}"}}"#,
    );
    let (ok, out, err) = oort(&["import", "ruleset", "-f", "set.json"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "imported 0 streams, 0 tables and 1 rules");
}

#[test]
fn a_config_file_gives_the_settings_and_the_command_line_wins() {
    let scratch = Scratch::new();
    scratch.write(
        "oort.yaml",
        "listen: 127.0.0.1:1\ndata-dir: store\ngrace: 1s\nallow-path: [out]\n",
    );
    scratch.write("out/.keep", "");
    // `--listen` on the command line wins over the file's; the rest comes from the file.
    let server = Server::start(&scratch, &["--config", "oort.yaml"]);
    let (status, _) = server.call("GET", "/ping", None);
    assert_eq!(status, 200);
    let (status, body) = server.call(
        "POST",
        "/streams",
        Some(r#"{"sql": "CREATE STREAM s () WITH (TYPE=\"memory\", DATASOURCE=\"t\")"}"#),
    );
    assert!(status < 300, "{status} {body}");
    assert!(
        scratch.path().join("store").join("oort.redb").is_file(),
        "the data directory is the file's `data-dir`"
    );
    // The file's ceiling applies: a file outside `out` cannot be granted.
    let (status, body) = server.call(
        "POST",
        "/rules",
        Some(
            r#"{"id": "r1", "sql": "SELECT * FROM s",
                "actions": [{"file": {"path": "elsewhere/x.jsonl"}}]}"#,
        ),
    );
    assert!(status >= 400, "{status} {body}");
    assert!(body.contains("out"), "{body}");
    server.stop();

    scratch.write("bad.yaml", "listn: 127.0.0.1:9081\n");
    let out = scratch
        .oort(&["serve", "--config", "bad.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "bad.yaml: `listn` is not a setting of `oort serve` (did you mean `listen`?)"
        ),
        "{stderr}"
    );
}

/// A zip archive of `entries` (name, bytes), deflated.
fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        writer.start_file(*name, options).unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// Serves `body` once over HTTP on a free loopback port; returns the port.
fn serve_once(body: Vec<u8>) -> (u16, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "the request ended early");
            request.extend_from_slice(&buf[..n]);
        }
        assert!(request.starts_with(b"GET /plugins/v2.zip HTTP/1.1"));
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&body).unwrap();
    });
    (port, handle)
}

#[test]
fn plugins_install_from_ekuiper_zip_archives_by_file_http_and_the_cli() {
    use oort_tests::guests;
    let scratch = Scratch::new();
    let v1 = std::fs::read(guests::VERSIONED_V1).unwrap();
    let v1_manifest = std::fs::read(guests::VERSIONED_V1_MANIFEST).unwrap();
    let v2 = std::fs::read(guests::VERSIONED_V2).unwrap();
    let v2_manifest = std::fs::read(guests::VERSIONED_V2_MANIFEST).unwrap();
    let limit = v1.len().max(v2.len()) + 4096;
    let put = |name: &str, entries: &[(&str, &[u8])]| {
        std::fs::write(scratch.path().join(name), zip_of(entries)).unwrap();
        format!("file://{}", scratch.path().join(name).display())
    };
    let good = put(
        "v1.zip",
        &[
            ("Versioned@v1.0.0.wasm", &v1),
            ("Versioned.json", &v1_manifest),
        ],
    );
    let slip = put(
        "slip.zip",
        &[("../evil.wasm", &v1), ("Versioned.wasm", &v1)],
    );
    let absolute = put("absolute.zip", &[("/tmp/evil.wasm", &v1)]);
    let nested = put("nested.zip", &[("build/Versioned.wasm", &v1)]);
    let stray = put(
        "stray.zip",
        &[("Versioned.wasm", &v1), ("install.sh", b"rm -rf /")],
    );
    let other = put("other.zip", &[("Other.wasm", &v1)]);
    let big = vec![b' '; limit + 1];
    let oversize = put(
        "big.zip",
        &[("Versioned.wasm", &v1), ("Versioned.json", &big)],
    );
    std::fs::write(scratch.path().join("broken.zip"), b"PK\x03\x04 not really").unwrap();
    let broken = format!("file://{}", scratch.path().join("broken.zip").display());
    scratch.write("data/rows.jsonl", "{\"n\":1}\n{\"n\":2}\n");

    let limit_arg = limit.to_string();
    let server = Server::start(&scratch, &["--max-plugin-size", &limit_arg]);
    let body = |file: &str| format!(r#"{{"name":"Versioned","file":"{file}"}}"#);
    for (file, says) in [
        (&slip, "entry `../evil.wasm` escapes the plugin's folder"),
        (
            &absolute,
            "entry `/tmp/evil.wasm` escapes the plugin's folder",
        ),
        (&nested, "entry `build/Versioned.wasm` is in a folder"),
        (&stray, "install scripts are not run"),
        (
            &other,
            "entry `Other.wasm` is not part of sink plugin `Versioned`",
        ),
        (&oversize, "over the limit of"),
        (&broken, "not a zip archive"),
    ] {
        let (status, answer) = server.json("POST", "/plugins/sinks", Some(&body(file)));
        assert_eq!(status, 400, "{file}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(says), "{file}: {message}");
    }
    // Nothing of a refused archive was written anywhere.
    assert!(!scratch.path().join("plugins/evil.wasm").exists());
    assert!(!scratch.path().join("plugins/sinks/Versioned.wasm").exists());
    let (_, listed) = server.json("GET", "/plugins/sinks", None);
    assert!(
        !listed
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("Versioned")),
        "{listed}"
    );

    // eKuiper's body as its documentation shows it, with a zip.
    assert_eq!(
        server.call("POST", "/plugins/sinks", Some(&body(&good))),
        (201, "Plugin Versioned is created.".into())
    );
    let (_, described) = server.json("GET", "/plugins/sinks/Versioned", None);
    assert_eq!(described["version"], "1.0.0", "{described}");
    assert!(described["manifest"].is_object(), "{described}");

    // An update downloaded over HTTP.
    let archive = zip_of(&[("Versioned.wasm", &v2), ("Versioned.json", &v2_manifest)]);
    let (port, http) = serve_once(archive);
    let url = format!("http://127.0.0.1:{port}/plugins/v2.zip");
    let (status, answer) = server.json("PUT", "/plugins/sinks/Versioned", Some(&body(&url)));
    assert_eq!(status, 200, "{answer}");
    http.join().unwrap();
    let installed = std::fs::read(scratch.path().join("plugins/sinks/Versioned.wasm")).unwrap();
    assert_eq!(installed, v2);
    // A download that is not there.
    let (status, answer) = server.json(
        "PUT",
        "/plugins/sinks/Versioned",
        Some(&body(&format!("http://127.0.0.1:{port}/gone.zip"))),
    );
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        server.call("DELETE", "/plugins/sinks/Versioned", None).0,
        200
    );

    // The CLI installs the archive itself, and a rule runs the build it holds.
    let host = format!("127.0.0.1:{}", server.port);
    let out = scratch
        .oort(&[
            "create",
            "plugin",
            "sink",
            "Versioned",
            "-f",
            "v1.zip",
            "--host",
            &host,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Plugin Versioned is created."
    );
    let stream = r#"{"sql":"CREATE STREAM rows (n bigint) WITH (TYPE=\"file\", DATASOURCE=\"rows.jsonl\")"}"#;
    assert_eq!(server.call("POST", "/streams", Some(stream)).0, 201);
    let rule =
        r#"{"id":"z","sql":"SELECT n FROM rows","actions":[{"versioned":{"path":"out/v.jsonl"}}]}"#;
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    server.wait_status("z", "stopped");
    assert_eq!(
        versioned_rows(&scratch.path().join("data/out/v.jsonl")),
        vec![("v1".to_string(), 1), ("v1".to_string(), 2)]
    );
}

#[test]
fn mqtt_sink_conf_keys_persist_and_actions_refer_to_them_by_resource_id() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let scratch = scratch_for(&broker);
    let args = ["--mqtt-conf", "etc/mqtt_source.yaml"];
    let server = Server::start(&scratch, &args);
    // The key gives the broker and a topic the action overrides.
    let key = serde_json::json!({ "server": broker.url(), "qos": 1, "topic": "not/this" });
    let put = |path: &str, body: &str| server.call("PUT", path, Some(body)).0;
    assert_eq!(
        put("/metadata/sinks/mqtt/confKeys/cloud", &key.to_string()),
        200
    );
    let body = r#"{"qos": 0}"#;
    assert_eq!(put("/metadata/sinks/mqtt/confKeys/invalid.test", body), 400);
    assert_eq!(
        put("/metadata/sinks/mqtt/confKeys/bad", r#"{"qos": 7}"#),
        400
    );
    assert_eq!(
        put(
            "/metadata/sinks/mqtt/confKeys/bad",
            r#"{"server": "nohost"}"#
        ),
        400
    );
    assert_eq!(put("/metadata/sinks/rest/confKeys/x", body), 400);
    assert_eq!(
        server
            .call("DELETE", "/metadata/sinks/mqtt/confKeys/nothere", None)
            .0,
        404
    );
    server.stop();

    // After a restart the key is there, and an action naming it publishes with it.
    let server = Server::start(&scratch, &args);
    let (status, all) = server.json("GET", "/metadata/sinks/yaml/mqtt", None);
    assert_eq!(status, 200);
    assert_eq!(all["cloud"]["server"], broker.url().as_str(), "{all}");
    assert!(all.get("bad").is_none(), "{all}");
    let (status, one) = server.json("GET", "/metadata/sinks/mqtt/confKeys/cloud", None);
    assert_eq!((status, &one["qos"]), (200, &serde_json::json!(1)), "{one}");
    server.create_stream("CREATE STREAM sinkkey (n bigint) WITH (DATASOURCE=\"in/sinkkey\")");
    let unknown = r#"{"id":"lost","sql":"SELECT n FROM sinkkey","actions":[{"mqtt":{"resourceId":"nothere","topic":"x"}}]}"#;
    server.refuses_rule(unknown, &["actions[0].mqtt.resourceId", "nothere"]);
    let rule = r#"{"id":"keyed","sql":"SELECT n FROM sinkkey","actions":[{"mqtt":{"resourceId":"cloud","topic":"out/sinkkey"}}]}"#;
    relays_ten(&server, &broker, rule, "in/sinkkey", "out/sinkkey");
    // The rule keeps its reference, not the key's props.
    let (_, described) = server.json("GET", "/rules/keyed", None);
    assert_eq!(
        described["actions"][0]["mqtt"]["resourceId"], "cloud",
        "{described}"
    );
    assert_eq!(
        server
            .call("DELETE", "/metadata/sinks/mqtt/confKeys/cloud", None)
            .0,
        200
    );
    let (_, all) = server.json("GET", "/metadata/sinks/yaml/mqtt", None);
    assert!(all.get("cloud").is_none(), "{all}");
    server.stop();
}

#[test]
fn mqtt_conf_keys_over_ekuipers_api_persist_and_serve_streams() {
    let Some(broker) = Broker::start() else {
        return;
    };
    // `default` points at a closed port: only the key given over the API reaches the broker.
    let (scratch, args) = scratch_with_a_closed_default();
    let server = Server::start(&scratch, &args);
    let key = serde_json::json!({ "qos": 1, "server": broker.url(), "password": "s3cret" });
    let (status, _) = server.call(
        "PUT",
        "/metadata/sources/mqtt/confKeys/local",
        Some(&key.to_string()),
    );
    assert_eq!(status, 200);
    let (status, all) = server.json("GET", "/metadata/sources/yaml/mqtt", None);
    assert_eq!(status, 200);
    assert_eq!(all["default"]["server"], "tcp://127.0.0.1:1", "{all}");
    assert_eq!(all["local"]["server"], broker.url().as_str(), "{all}");
    assert_eq!(all["local"]["password"], "******", "{all}");
    let (status, one) = server.json("GET", "/metadata/sources/mqtt/confKeys/local", None);
    assert_eq!((status, &one["qos"]), (200, &serde_json::json!(1)), "{one}");
    // eKuiper's refusals: a key with a dot, a body that is no MQTT setting, a missing key.
    let body = Some(r#"{"qos": 0, "server": "tcp://127.0.0.1:1883"}"#);
    let put = |path: &str, body: Option<&str>| server.call("PUT", path, body).0;
    assert_eq!(
        put("/metadata/sources/mqtt/confKeys/invalid.test", body),
        400
    );
    assert_eq!(
        put("/metadata/sources/mqtt/confKeys/bad", Some(r#"{"qos": 7}"#)),
        400
    );
    assert_eq!(
        put(
            "/metadata/sources/mqtt/confKeys/bad",
            Some(r#"{"server": "nohost"}"#)
        ),
        400
    );
    assert_eq!(
        server
            .call("DELETE", "/metadata/sources/mqtt/confKeys/nothere", None)
            .0,
        404
    );
    server.stop();

    // After a restart the key is there, and a stream naming it connects with it.
    let server = Server::start(&scratch, &args);
    let (_, all) = server.json("GET", "/metadata/sources/yaml/mqtt", None);
    assert_eq!(all["local"]["server"], broker.url().as_str(), "{all}");
    server.create_stream(
        "CREATE STREAM keyed (n bigint) WITH (DATASOURCE=\"in/keyed\", CONF_KEY=\"local\")",
    );
    let rule = relay_rule("keyed", "keyed", &broker, "out/keyed");
    relays_ten(&server, &broker, &rule, "in/keyed", "out/keyed");
    // Dropped, the key is gone from the list.
    assert_eq!(
        server
            .call("DELETE", "/metadata/sources/mqtt/confKeys/local", None)
            .0,
        200
    );
    let (_, all) = server.json("GET", "/metadata/sources/yaml/mqtt", None);
    assert!(all.get("local").is_none(), "{all}");
    server.stop();
}

/// `openssl` in `dir`: a CA (`<ca>.pem`, `<ca>.key`), or a certificate `<name>.pem` with its
/// key, signed by `ca`, for `usage` (`serverAuth` or `clientAuth`).
fn openssl_cert(dir: &std::path::Path, name: &str, ca: Option<&str>, usage: &str) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("running openssl");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let key = format!("{name}.key");
    let pem = format!("{name}.pem");
    let subject = format!("/CN={name}");
    let Some(ca) = ca else {
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "2",
            "-subj",
            &subject,
        ]);
        return;
    };
    let csr = format!("{name}.csr");
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        format!(
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n"
        ),
    )
    .unwrap();
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &csr,
        "-subj",
        &subject,
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &format!("{ca}.pem"),
        "-CAkey",
        &format!("{ca}.key"),
        "-CAcreateserial",
        "-out",
        &pem,
        "-days",
        "2",
        "-extfile",
        &ext,
    ]);
}

#[test]
fn client_certificates_authenticate_on_a_non_loopback_address() {
    let scratch = Scratch::new();
    let dir = scratch.path();
    openssl_cert(dir, "ca", None, "");
    openssl_cert(dir, "other-ca", None, "");
    openssl_cert(dir, "server", Some("ca"), "serverAuth");
    openssl_cert(dir, "client", Some("ca"), "clientAuth");
    openssl_cert(dir, "stranger", Some("other-ca"), "clientAuth");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let listen = format!("0.0.0.0:{port}");
    // No token file: the client CA alone lets the server listen beyond loopback.
    let mut child = scratch
        .oort(&[
            "serve",
            "--listen",
            &listen,
            "--tls-cert",
            "server.pem",
            "--tls-key",
            "server.key",
            "--client-ca",
            "ca.pem",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = collect_stderr(&mut child);
    wait_for("the server to listen", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let call = |cert: Option<&str>| {
        let mut cmd = std::process::Command::new("curl");
        cmd.current_dir(dir).args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            "ca.pem",
        ]);
        if let Some(name) = cert {
            cmd.args([
                "--cert",
                &format!("{name}.pem"),
                "--key",
                &format!("{name}.key"),
            ]);
        }
        let out = cmd
            .arg(format!("https://127.0.0.1:{port}/rules"))
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8(out.stdout).unwrap())
    };
    assert_eq!(call(Some("client")), (true, "200".to_string()));
    // Without a certificate, or with one another CA signed, the handshake is refused.
    let (ok, status) = call(None);
    assert!(!ok && status == "000", "{status}");
    let (ok, status) = call(Some("stranger"));
    assert!(!ok && status == "000", "{status}");
    // A refused client holds up no one: the good client is served again.
    assert_eq!(call(Some("client")), (true, "200".to_string()));
    assert!(
        log.lock().unwrap().contains("TLS handshake refused"),
        "{}",
        log.lock().unwrap()
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// A free loopback port.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[test]
fn plugins_download_over_https_checking_the_certificate() {
    use oort_tests::guests;
    let scratch = Scratch::new();
    let dir = scratch.path();
    openssl_cert(dir, "ca", None, "");
    openssl_cert(dir, "files", Some("ca"), "serverAuth");
    // An HTTPS file server (openssl's) serving the folder `www/` with the certificate made here.
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::copy(guests::VERSIONED_V1, www.join("Versioned.wasm")).unwrap();
    let https_port = free_port();
    let mut files = std::process::Command::new("openssl")
        .args(["s_server", "-quiet", "-WWW", "-accept"])
        .arg(https_port.to_string())
        .arg("-cert")
        .arg(dir.join("files.pem"))
        .arg("-key")
        .arg(dir.join("files.key"))
        .current_dir(&www)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting openssl s_server");
    wait_for(
        "the HTTPS server to listen",
        Duration::from_secs(30),
        || TcpStream::connect(("127.0.0.1", https_port)).is_ok(),
    );
    let body = serde_json::json!({
        "name": "Versioned",
        "file": format!("https://127.0.0.1:{https_port}/Versioned.wasm"),
    })
    .to_string();

    // The certificate's CA is not trusted: the download is refused.
    let server = Server::start(&scratch, &[]);
    let (status, answer) = server.call("POST", "/plugins/sinks", Some(&body));
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("TLS"), "{answer}");
    assert!(!dir.join("plugins/sinks/Versioned.wasm").exists());
    server.stop();

    // Trusted through SSL_CERT_FILE, the same download installs the build.
    let ca = dir.join("ca.pem");
    let server = Server::start_with_env(&scratch, free_port(), &[], &[("SSL_CERT_FILE", &ca)]);
    let (status, answer) = server.call("POST", "/plugins/sinks", Some(&body));
    assert!((200..300).contains(&status), "{status} {answer}");
    let installed = std::fs::read(dir.join("plugins/sinks/Versioned.wasm")).unwrap();
    assert_eq!(installed, std::fs::read(guests::VERSIONED_V1).unwrap());
    server.stop();
    let _ = files.kill();
    let _ = files.wait();
}

#[test]
fn shared_connections_persist_and_sources_and_sinks_select_them() {
    let Some(broker) = Broker::start() else {
        return;
    };
    // `default` points at a closed port: only the connection reaches the broker.
    let (scratch, args) = scratch_with_a_closed_default();
    let server = Server::start(&scratch, &args);
    let conn = serde_json::json!({
        "id": "conn1", "typ": "mqtt",
        "props": { "server": broker.url(), "password": "s3cret" }
    });
    let post = |body: &str| server.call("POST", "/connections", Some(body));
    let (status, text) = post(&conn.to_string());
    assert_eq!((status, text.as_str()), (201, "success"));
    // eKuiper's refusals: a taken id, an id with a dot, a type Oort lacks, a bad server.
    assert_eq!(post(&conn.to_string()).0, 409);
    let refused = [
        r#"{"id":"a.b","typ":"mqtt","props":{}}"#,
        r#"{"id":"k","typ":"kafka","props":{"brokers":"x:9092"}}"#,
        r#"{"id":"bad","typ":"mqtt","props":{"server":"nohost"}}"#,
        r#"{"typ":"mqtt","props":{}}"#,
    ];
    for body in refused {
        assert_eq!(post(body).0, 400, "{body}");
    }
    // A source key and the MQTT sink's key may select it; an unknown one is refused.
    let put = |path: &str, body: &str| server.call("PUT", path, Some(body));
    let selects = r#"{"qos": 1, "connectionSelector": "conn1"}"#;
    assert_eq!(
        put("/metadata/sources/mqtt/confKeys/viaconn", selects).0,
        200
    );
    let (status, text) = put(
        "/metadata/sources/mqtt/confKeys/lost",
        r#"{"connectionSelector": "nothere"}"#,
    );
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("connectionSelector") && text.contains("nothere"),
        "{text}"
    );
    server.stop();

    // After a restart: listed (secrets hidden), described, and used by a stream and an action.
    let server = Server::start(&scratch, &args);
    let (status, all) = server.json("GET", "/connections", None);
    assert_eq!(status, 200);
    assert_eq!(all[0]["id"], "conn1", "{all}");
    assert_eq!(all[0]["typ"], "mqtt", "{all}");
    assert_eq!(all[0]["props"]["server"], broker.url().as_str(), "{all}");
    assert_eq!(all[0]["props"]["password"], "******", "{all}");
    assert_eq!(all[0]["refCount"], 1, "{all}");
    assert_eq!(server.call("GET", "/connections/nothere", None).0, 404);
    let (_, yaml) = server.json("GET", "/metadata/connections/yaml/mqtt", None);
    assert_eq!(yaml["conn1"]["server"], broker.url().as_str(), "{yaml}");
    server.create_stream(
        "CREATE STREAM viaconn (n bigint) WITH (DATASOURCE=\"in/viaconn\", CONF_KEY=\"viaconn\")",
    );
    let unknown = r#"{"id":"lost","sql":"SELECT n FROM viaconn","actions":[{"mqtt":{"connectionSelector":"nothere","topic":"x"}}]}"#;
    server.refuses_rule(unknown, &["actions[0].mqtt.connectionSelector", "nothere"]);
    // eKuiper's older form of the selector, `mqtt.<id>`, names the same connection.
    let rule = r#"{"id":"viaconn","sql":"SELECT n FROM viaconn","actions":[{"mqtt":{"connectionSelector":"mqtt.conn1","topic":"out/viaconn","qos":1}}]}"#;
    relays_ten(&server, &broker, rule, "in/viaconn", "out/viaconn");

    // In use, it cannot be dropped; the answer names who uses it.
    let (status, text) = server.call("DELETE", "/connections/conn1", None);
    assert_eq!(status, 409, "{text}");
    assert!(
        text.contains("rule `viaconn`") && text.contains("mqtt source key `viaconn`"),
        "{text}"
    );
    // Replaced (the rule takes it at its next start), through both forms of the API.
    let put = |path: &str, body: &str| server.call("PUT", path, Some(body));
    let replaced = serde_json::json!({"typ": "mqtt", "props": {"server": broker.url(), "qos": 1}});
    let (status, text) = put("/connections/conn1", &replaced.to_string());
    assert_eq!((status, text.as_str()), (200, "success"));
    let (_, one) = server.json("GET", "/connections/conn1", None);
    assert!(one["props"].get("password").is_none(), "{one}");
    assert_eq!(one["refCount"], 2, "{one}");
    let older = format!(r#"{{"server": "{}"}}"#, broker.url());
    assert_eq!(
        put("/metadata/connections/mqtt/confKeys/conn2", &older).0,
        200
    );
    assert_eq!(
        server
            .call("DELETE", "/metadata/connections/mqtt/confKeys/conn2", None)
            .0,
        200
    );
    // Once nothing uses it, it goes.
    assert_eq!(server.call("DELETE", "/rules/viaconn", None).0, 200);
    assert_eq!(
        server
            .call("DELETE", "/metadata/sources/mqtt/confKeys/viaconn", None)
            .0,
        200
    );
    assert_eq!(server.call("DELETE", "/connections/conn1", None).0, 200);
    let (_, all) = server.json("GET", "/connections", None);
    assert_eq!(all, serde_json::json!([]));
    server.stop();
}

#[test]
fn run_rule_reads_resource_ids_and_connections_from_the_servers_store() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let scratch = Scratch::new();
    let server = Server::start(&scratch, &[]);
    let key = serde_json::json!({ "qos": 1, "topic": "not/this", "connectionSelector": "local" });
    let conn = serde_json::json!({"id": "local", "typ": "mqtt", "props": {"server": broker.url()}});
    assert_eq!(
        server
            .call("POST", "/connections", Some(&conn.to_string()))
            .0,
        201
    );
    assert_eq!(
        server
            .call(
                "PUT",
                "/metadata/sinks/mqtt/confKeys/cloud",
                Some(&key.to_string())
            )
            .0,
        200
    );
    // While the server runs, it holds the store: run-rule says so.
    scratch.write(
        "streams.sql",
        "CREATE STREAM s (n bigint) WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\");\n",
    );
    scratch.write(
        "in.jsonl",
        &(0..10)
            .map(|n| format!("{{\"n\":{n}}}\n"))
            .collect::<String>(),
    );
    let rule = |key: &str| {
        format!(
            r#"{{"id":"r","sql":"SELECT n FROM s","actions":[{{"mqtt":{{"resourceId":"{key}","topic":"out/runrule"}}}}]}}"#
        )
    };
    scratch.write("rule.json", &rule("cloud"));
    let run = || {
        scratch
            .oort(&[
                "run-rule",
                "rule.json",
                "--streams",
                "streams.sql",
                "--data-dir",
                "data",
            ])
            .output()
            .unwrap()
    };
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("actions[0].mqtt") && stderr.contains("running `oort serve`"),
        "{stderr}"
    );
    server.stop();

    // Stopped, its key and connection reach the broker.
    let sub = Subscriber::new(broker.port, "verify-runrule-key", "out/runrule");
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let got = sub.collect_until(Duration::from_secs(30), |g| ns(g).len() >= 10);
    assert_eq!(ns(&got), (0..10).collect());

    // An unknown key names the field and the store.
    scratch.write("rule.json", &rule("nothere"));
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("actions[0].mqtt.resourceId")
            && stderr.contains("nothere")
            && stderr.contains("oort.redb"),
        "{stderr}"
    );
}
