//! Hostile guests, each a real component built from source: whatever a sink does (loops in any
//! phase, a memory bomb, a log flood, panics, reaching outside its grants, a broken or foreign
//! module, bad MQTT publishes through the host, forged log lines), the host keeps running, the
//! rule's other action delivers every row, and the summary and the log say what happened.

use std::time::Duration;

use oort_tests::broker::{Broker, Subscriber};
use serde_json::{Value, json};

use crate::common::{Run, Scratch, numbered};

const ROWS: usize = 6;

/// A rule with two actions: the probe acting as `hostile` asks, and the file sink beside it.
fn run_beside(hostile: Value, extra: &[&str]) -> (Scratch, Run) {
    run_plugin_beside("probe", hostile, extra, |_| {})
}

fn run_plugin_beside(
    plugin: &str,
    props: Value,
    extra: &[&str],
    setup: impl FnOnce(&Scratch),
) -> (Scratch, Run) {
    let scratch = Scratch::new();
    setup(&scratch);
    scratch.write(
        "streams.sql",
        "CREATE STREAM demo () WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\");\n",
    );
    scratch.write("in.jsonl", &numbered(ROWS));
    let mut props = props;
    if plugin == "probe" {
        props["journal"] = json!("out/journal.txt");
    }
    props["batchSize"] = json!(2);
    let rule = json!({"id": "r", "sql": "SELECT n FROM demo", "actions": [
        {plugin: props},
        {"file": {"path": "out/good.jsonl"}}
    ]});
    scratch.write("rule.json", &rule.to_string());
    let run = scratch.run_rule(extra);
    (scratch, run)
}

/// The other action delivered every row, and every payload of both is accounted for.
fn others_delivered(scratch: &Scratch, run: &Run) {
    assert_eq!(
        scratch.read("out/good.jsonl"),
        numbered(ROWS),
        "the healthy action delivers everything:\n{}",
        run.stderr
    );
    let good = run.action(1);
    assert_eq!(good["records_out_total"], ROWS, "{good}");
    for i in 0..2 {
        assert_eq!(run.action(i)["balanced"], true, "{}", run.action(i));
    }
}

fn last_error(run: &Run) -> String {
    run.action(0)["last_exception"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn an_endless_loop_in_collect_is_interrupted_every_time() {
    let (scratch, run) = run_beside(
        json!({"failPhase": "collect", "failKind": "hang", "callTimeout": 150}),
        &[],
    );
    assert_eq!(run.code, Some(3));
    others_delivered(&scratch, &run);
    let hostile = run.action(0);
    assert_eq!(
        hostile["failed_total"], ROWS,
        "poison batches, counted: {hostile}"
    );
    assert!(last_error(&run).contains("deadline"), "{hostile}");
    assert!(run.stderr.contains("poison batch"), "{}", run.stderr);
}

#[test]
fn an_endless_loop_in_open_or_configure_takes_down_only_its_action() {
    for phase in ["open", "configure"] {
        let (scratch, run) = run_beside(
            json!({"failPhase": phase, "failKind": "hang", "callTimeout": 150,
                   "deadLetter": "dead.jsonl"}),
            &[],
        );
        assert_eq!(run.code, Some(3), "{phase}: {}", run.stderr);
        others_delivered(&scratch, &run);
        let hostile = run.action(0);
        assert_eq!(hostile["dead_letter_total"], ROWS, "{phase}: {hostile}");
        assert_eq!(scratch.read("dead.jsonl").lines().count(), ROWS);
        assert!(
            run.stderr
                .contains(&format!("the sink failed to start ({phase})")),
            "{phase}: {}",
            run.stderr
        );
        assert!(last_error(&run).contains("deadline"), "{phase}: {hostile}");
    }
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    let (scratch, run) = run_beside(
        json!({"failPhase": "collect", "failKind": "bomb", "failGenerations": 1,
               "maxMemory": "16MiB"}),
        &[],
    );
    run.assert_ok();
    others_delivered(&scratch, &run);
    let hostile = run.action(0);
    assert_eq!(
        hostile["records_out_total"], ROWS,
        "a fresh instance takes over: {hostile}"
    );
    assert_eq!(hostile["restarts_total"], 1, "{hostile}");
    let error = last_error(&run);
    assert!(error.contains("trapped"), "{error}");
}

#[test]
fn fuel_stops_a_busy_guest_deterministically() {
    let (scratch, run) = run_beside(
        json!({"failPhase": "collect", "failKind": "hang", "failGenerations": 1,
               "fuel": 50_000_000, "callTimeout": 60_000}),
        &[],
    );
    run.assert_ok();
    others_delivered(&scratch, &run);
    assert!(last_error(&run).contains("fuel"), "{}", run.action(0));
}

#[test]
fn a_log_flood_is_rate_limited_and_counted() {
    let (scratch, run) = run_beside(
        json!({"failPhase": "collect", "failKind": "flood"}),
        &["--log", "info"],
    );
    run.assert_ok();
    others_delivered(&scratch, &run);
    let hostile = run.action(0);
    assert_eq!(hostile["records_out_total"], ROWS, "{hostile}");
    let dropped = hostile["dropped_logs_total"].as_u64().unwrap();
    assert!(dropped > 250_000, "{hostile}");
    let flood_lines = run.stderr.matches("flood line").count();
    assert!(
        flood_lines <= 3 * 200,
        "the host log got {flood_lines} flood lines"
    );
}

#[test]
fn a_panic_every_third_batch_costs_a_fresh_instance_not_a_row() {
    let scratch_rows = 9;
    let scratch = Scratch::new();
    scratch.write(
        "streams.sql",
        "CREATE STREAM demo () WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\");\n",
    );
    scratch.write("in.jsonl", &numbered(scratch_rows));
    let rule = json!({"id": "r", "sql": "SELECT n FROM demo", "actions": [
        {"probe": {"journal": "out/journal.txt", "failPhase": "collect", "failKind": "trap",
                   "failEvery": 3, "batchSize": 1}},
        {"file": {"path": "out/good.jsonl"}}
    ]});
    scratch.write("rule.json", &rule.to_string());
    let run = scratch.run_rule(&[]);
    run.assert_ok();
    let hostile = run.action(0);
    assert_eq!(hostile["records_out_total"], scratch_rows, "{hostile}");
    assert_eq!(hostile["failed_total"], 0, "{hostile}");
    assert!(
        hostile["restarts_total"].as_u64().unwrap() >= 3,
        "{hostile}"
    );
    assert_eq!(scratch.read("out/good.jsonl"), numbered(scratch_rows));
    assert!(
        run.stderr.contains("probe fails in collect as asked"),
        "the panic message is logged"
    );
}

#[test]
fn reading_outside_the_grant_is_refused() {
    let (scratch, run) = run_beside(
        json!({"escape": ["/etc/passwd", "../../etc/hostname"]}),
        &[],
    );
    run.assert_ok();
    others_delivered(&scratch, &run);
    let journal = scratch.read("out/journal.txt");
    assert!(journal.contains("escape /etc/passwd refused"), "{journal}");
    assert!(
        journal.contains("escape ../../etc/hostname refused"),
        "{journal}"
    );
}

#[test]
fn a_broken_or_foreign_module_takes_down_only_its_action() {
    type Setup = fn(&Scratch);
    let cases: [(&str, Setup); 2] = [
        ("truncated", |s| {
            let bytes = std::fs::read(oort_tests::guests::FILE).unwrap();
            std::fs::write(
                s.path().join("plugins/sinks/Truncated.wasm"),
                &bytes[..bytes.len() / 3],
            )
            .unwrap();
        }),
        ("notASink", |_| {}),
    ];
    for (plugin, setup) in cases {
        let (scratch, run) = run_plugin_beside(
            plugin,
            json!({"enableCache": true, "retryCount": 0}),
            // The sink never recovers: leave its rows cached at once.
            &["--drain-timeout", "0"],
            setup,
        );
        assert_eq!(run.code, Some(3), "{plugin}: {}", run.stderr);
        others_delivered(&scratch, &run);
        let hostile = run.action(0);
        assert_eq!(
            hostile["cached"], ROWS,
            "{plugin}: its rows wait in the cache for a good build: {hostile}"
        );
        assert!(
            run.stderr.contains("the sink cannot start"),
            "{plugin}: {}",
            run.stderr
        );
    }
}

#[test]
fn connecting_outside_the_network_grant_is_refused() {
    let granted = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    other.set_nonblocking(true).unwrap();
    let granted_addr = granted.local_addr().unwrap().to_string();
    let other_addr = other.local_addr().unwrap().to_string();
    let (scratch, run) = run_beside(
        json!({"connect": [granted_addr, other_addr, "example.com:80"],
               "grants": {"sockets": [granted_addr]}}),
        &["--log", "warn"],
    );
    run.assert_ok();
    others_delivered(&scratch, &run);
    let journal = scratch.read("out/journal.txt");
    assert!(
        journal.contains(&format!("connect {granted_addr} connected")),
        "{journal}"
    );
    assert!(
        journal.contains(&format!("connect {other_addr} refused")),
        "{journal}"
    );
    assert!(
        journal.contains("connect example.com:80 refused"),
        "no DNS either: {journal}"
    );
    assert!(
        other.accept().is_err(),
        "nothing reached the server outside the grant"
    );
    assert!(
        run.stderr
            .contains(&format!("TcpConnect {other_addr} denied")),
        "the denial is logged: {}",
        run.stderr
    );
}

#[test]
fn a_read_grant_beside_a_write_grant_stays_read_only() {
    // The journal's write grant and the peek file's read grant share a folder.
    let (scratch, run) = run_plugin_beside("probe", json!({"peek": "out/peek.txt"}), &[], |s| {
        s.write("out/peek.txt", "read me only");
    });
    run.assert_ok();
    others_delivered(&scratch, &run);
    let journal = scratch.read("out/journal.txt");
    assert!(journal.contains("peek read 12 bytes"), "{journal}");
    assert!(journal.contains("peek-write refused"), "{journal}");
    assert!(journal.contains("peek-touch refused"), "{journal}");
    let modified = std::fs::metadata(scratch.path().join("out/peek.txt"))
        .and_then(|m| m.modified())
        .unwrap();
    assert!(
        modified > std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(3600),
        "the read-only file keeps its times: {modified:?}"
    );
}

#[test]
fn a_bad_mqtt_publish_is_rejected_alone_and_the_shared_connection_stays_up() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let watch = Subscriber::new(broker.port, "watch-plant", "plant/#");
    // 65,545 bytes: written as a 16-bit length, the topic would read `plant/cmd`.
    let long = format!("plant/cmd{}/alerts", "x".repeat(65_529));
    let attacks = [
        (json!({"publishTo": long}), "the topic is 65545 bytes long"),
        (
            json!({"publishTo": "plant/a\u{0}b/alerts"}),
            "control character U+0000",
        ),
        (
            json!({"publishTo": "plant/big/alerts", "padTo": 17_000_000}),
            "the limit is 16777216",
        ),
    ];
    for (mut attack, why) in attacks {
        attack["server"] = json!(broker.url());
        attack["topics"] = json!(["plant/+/alerts"]);
        attack["retryCount"] = json!(0);
        attack["batchSize"] = json!(2);
        let scratch = Scratch::new();
        scratch.write(
            "streams.sql",
            "CREATE STREAM demo () WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\");\n",
        );
        scratch.write("in.jsonl", &numbered(ROWS));
        // The healthy relay shares the attacker's pooled connection to the broker.
        let rule = json!({"id": "r", "sql": "SELECT n FROM demo", "actions": [
            {"MqttRelay": attack},
            {"file": {"path": "out/good.jsonl"}},
            {"MqttRelay": {"server": broker.url(), "topics": ["plant/+/alerts"],
                           "publishTo": "plant/ok/alerts"}}
        ]});
        scratch.write("rule.json", &rule.to_string());
        let run = scratch.run_rule(&[]);
        assert_eq!(run.code, Some(3), "{why}: {}", run.stderr);
        others_delivered(&scratch, &run);
        let healthy = run.action(2);
        assert_eq!(healthy["records_out_total"], ROWS, "{why}: {healthy}");
        let hostile = run.action(0);
        assert_eq!(hostile["failed_total"], ROWS, "{why}: {hostile}");
        let error = last_error(&run);
        assert!(
            error.contains("rejected") && error.contains(why),
            "{why}: {hostile}"
        );
        assert!(error.len() < 8192, "the topic is quoted cut: {error}");
        assert!(
            !run.stderr.contains("connection failed"),
            "{why}: the shared connection never dropped:\n{}",
            run.stderr
        );
        let got = watch.collect_until(Duration::from_secs(10), |g| g.len() >= ROWS);
        assert_eq!(got.len(), ROWS, "{why}");
        assert!(
            got.iter().all(|(topic, _)| topic == "plant/ok/alerts"),
            "{why}: only the healthy relay's messages arrive: {:?}",
            got.iter().map(|(t, _)| t.len().min(40)).collect::<Vec<_>>()
        );
    }
    assert!(
        watch
            .collect_until(Duration::from_millis(300), |_| false)
            .is_empty(),
        "nothing else arrived"
    );
}

#[test]
fn a_guest_cannot_forge_host_log_lines() {
    let (scratch, run) = run_beside(
        json!({"failPhase": "collect", "failKind": "forge"}),
        &["--log", "info"],
    );
    run.assert_ok();
    others_delivered(&scratch, &run);
    assert!(
        run.stderr.contains("forged\\n"),
        "the guest's line is logged, escaped:\n{}",
        run.stderr
    );
    for line in run.stderr.lines() {
        assert!(
            !line.contains("FAKE") || line.contains("sink: forged"),
            "a line of the host log comes from the guest: {line:?}"
        );
        assert!(!line.contains('\u{1b}'), "{line:?}");
    }
    let long = run
        .stderr
        .lines()
        .find(|l| l.contains("long line"))
        .expect("the long line is logged");
    assert!(long.len() < 6000, "{} bytes", long.len());
    assert!(long.contains("[truncated: 100010 bytes]"), "{long}");
}

#[test]
fn several_memories_share_one_memory_limit() {
    // Four core modules, each with its own memory; three grow to 62.5 MiB at `open`: each under
    // the 64 MiB limit, together three times over it.
    let (scratch, run) = run_plugin_beside(
        "manyMemories",
        json!({"deadLetter": "dead.jsonl", "maxMemory": "64MiB"}),
        &[],
        |s| s.install("ManyMemories", oort_tests::guests::MANY_MEMORIES, ""),
    );
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    others_delivered(&scratch, &run);
    let hostile = run.action(0);
    assert_eq!(hostile["records_out_total"], 0, "{hostile}");
    assert_eq!(hostile["dead_letter_total"], ROWS, "{hostile}");
    assert!(
        run.stderr.contains("the sink failed to start (open)"),
        "{}",
        run.stderr
    );
    let error = last_error(&run);
    assert!(
        error.contains("for the whole instance, over its limit of 67108864"),
        "{hostile}"
    );
}

/// Where the `greedy` guest's author collects telemetry: its compiled-in and manifest default.
const AUTHOR_COLLECTOR: &str = "127.77.0.1:18080";

fn install_greedy(scratch: &Scratch) {
    scratch.install(
        "Greedy",
        oort_tests::guests::GREEDY,
        oort_tests::guests::GREEDY_MANIFEST,
    );
}

#[test]
fn a_manifest_default_reaches_nothing_the_rule_does_not_grant() {
    let author = std::net::TcpListener::bind(AUTHOR_COLLECTOR).unwrap();
    author.set_nonblocking(true).unwrap();
    let telemetry = format!("http://{AUTHOR_COLLECTOR}/telemetry");
    // The operator grants some other destination, so `wasi:http` is linked (without any http
    // grant the first call would trap) and the request to the default meets the gate.
    let (scratch, run) = run_plugin_beside(
        "greedy",
        json!({"journal": "out/journal.txt", "grants": {"http": ["http://127.0.0.1:9"]}}),
        &["--log", "info"],
        install_greedy,
    );
    run.assert_ok();
    others_delivered(&scratch, &run);
    assert!(
        author.accept().is_err(),
        "the sink author's server got rows the operator never sent there"
    );
    let journal = scratch.read("out/journal.txt");
    assert!(
        journal.contains("telemetry refused (ErrorCode::HttpRequestDenied)"),
        "{journal}"
    );
    let refused = format!("manifest default http {telemetry} for prop `telemetryUrl`: NOT granted");
    assert!(
        run.stderr.contains(&refused),
        "the start log: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("grant file ") && run.stderr.contains("from the rule's prop `journal`"),
        "the start log shows each grant and its origin: {}",
        run.stderr
    );

    let validate = Run::from(
        scratch
            .oort(&["validate", "rule.json", "--streams", "streams.sql"])
            .output()
            .unwrap(),
    );
    validate.assert_ok();
    assert!(validate.stdout.contains(&refused), "{}", validate.stdout);
    assert!(
        validate.stdout.contains(&format!(
            "warning: rule `r`: action `greedy_0`: the manifest defaults prop `telemetryUrl` to {telemetry}"
        )),
        "{}",
        validate.stdout
    );
    let inspect = Run::from(
        scratch
            .oort(&["sink", "inspect", "plugins/sinks/Greedy.wasm"])
            .output()
            .unwrap(),
    );
    assert!(
        inspect.stdout.contains(&format!(
            "http:    the URL in prop `telemetryUrl` (default {telemetry}: fills the prop"
        )),
        "{}",
        inspect.stdout
    );

    // The operator accepts a destination by naming it: then the rows go there.
    let collector = oort_tests::http::HttpServer::start();
    let (scratch, run) = run_plugin_beside(
        "greedy",
        json!({"journal": "out/journal.txt", "telemetryUrl": collector.url("/t")}),
        &[],
        install_greedy,
    );
    run.assert_ok();
    others_delivered(&scratch, &run);
    assert_eq!(
        collector.requests().len(),
        ROWS / 2,
        "one request per batch"
    );
    let journal = scratch.read("out/journal.txt");
    assert!(journal.contains("telemetry status 200"), "{journal}");
}

#[test]
fn hoarded_descriptors_stop_at_the_instance_caps() {
    let sockets = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let socket_addr = sockets.local_addr().unwrap().to_string();
    // Accepts connections (the kernel's backlog) and never answers: requests stay in flight.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hold = format!("http://{}/hold", silent.local_addr().unwrap());
    let (scratch, run) = run_plugin_beside(
        "greedy",
        json!({"journal": "out/journal.txt", "hoard": "ref.txt", "hoardCount": 20_000,
               "connect": socket_addr, "connectCount": 50, "maxSockets": 8,
               "hold": hold, "requests": 200, "maxHttpRequests": 5,
               "grants": {"sockets": [socket_addr], "http": [hold]}}),
        &[],
        |s| {
            install_greedy(s);
            s.write("ref.txt", "reference\n");
        },
    );
    run.assert_ok();
    others_delivered(&scratch, &run);
    let journal = scratch.read("out/journal.txt");
    assert!(
        journal.contains("files opened 63 refused "),
        "the default cap on open files, 64, the journal holding one: {journal}"
    );
    assert!(
        journal.contains("sockets opened 8 refused "),
        "maxSockets: {journal}"
    );
    assert!(
        journal.contains(
            "requests started 200 in flight 5 refused 195 ErrorCode::ConnectionLimitReached"
        ),
        "maxHttpRequests: {journal}"
    );
    assert!(
        run.stderr.contains("holds 64 open files, its limit")
            && run.stderr.contains("holds 8 sockets, its limit")
            && run.stderr.contains("5 requests in flight, its limit"),
        "each refusal is logged: {}",
        run.stderr
    );
}

/// Installs the hoarder guest (not among the plugins every scratch folder gets).
fn install_hoarder(scratch: &Scratch) {
    scratch.install(
        "Hoarder",
        oort_tests::guests::HOARDER,
        oort_tests::guests::HOARDER_MANIFEST,
    );
}

#[test]
fn a_huge_error_message_is_capped_before_it_is_copied() {
    // 1 MB of control characters per batch: JSON-escaped into every dead letter of the batch,
    // it used to make 6 MB per record.
    let (scratch, run) = run_plugin_beside(
        "hoarder",
        json!({"rejectWith": 1_000_000, "deadLetter": "dead.jsonl"}),
        &[],
        install_hoarder,
    );
    assert_eq!(run.code, Some(3), "rows were dead-lettered: {}", run.stderr);
    others_delivered(&scratch, &run);
    let hostile = run.action(0);
    assert_eq!(hostile["dead_letter_total"], ROWS, "{hostile}");
    let dead = scratch.read("dead.jsonl");
    assert_eq!(dead.lines().count(), ROWS);
    assert!(
        dead.len() < ROWS * (32 << 10),
        "{} bytes of dead letters for {ROWS} rows",
        dead.len()
    );
    for line in dead.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        let error = record["error"].as_str().unwrap();
        assert!(error.ends_with("[truncated: 1000000 bytes]"), "{error}");
    }
    assert!(
        last_error(&run).len() < 8 << 10,
        "the summary is capped too"
    );

    // Without a dead-letter output, the message goes to the log once per batch: capped too.
    let (scratch, run) = run_plugin_beside(
        "hoarder",
        json!({"rejectWith": 1_000_000}),
        &[],
        install_hoarder,
    );
    others_delivered(&scratch, &run);
    assert_eq!(run.action(0)["failed_total"], ROWS, "{}", run.action(0));
    assert!(
        run.stderr.len() < 256 << 10,
        "{} bytes of log for {ROWS} rejected rows",
        run.stderr.len()
    );
}

/// The run ends well, the healthy actions deliver everything, and the hostile action (0) trapped
/// once (naming `cause`), was replaced, and its new instance delivered every row.
fn replaced_once_after_a_trap(scratch: &Scratch, run: &Run, cause: &str, what: &str) {
    run.assert_ok();
    others_delivered(scratch, run);
    let hostile = run.action(0);
    assert_eq!(
        hostile["records_out_total"], ROWS,
        "{what}: a fresh instance takes over: {hostile}"
    );
    assert_eq!(hostile["restarts_total"], 1, "{what}: {hostile}");
    let error = last_error(run);
    assert!(
        error.contains("trapped") && error.contains(cause),
        "{what}: {error}"
    );
}

#[test]
fn wasi_http_is_not_there_for_a_sink_without_an_http_grant() {
    // Unsent requests with 1 MiB in each body used to pile up in the host, outside `maxMemory`.
    let (scratch, run) = run_plugin_beside(
        "hoarder",
        json!({"hoard": "bodies", "count": 200, "maxMemory": "16MiB"}),
        &[],
        install_hoarder,
    );
    replaced_once_after_a_trap(&scratch, &run, "wasi:http", "bodies");
}

#[test]
fn what_the_host_holds_for_a_granted_sink_is_bounded_by_its_max_memory() {
    for hoard in ["bodies", "fields"] {
        // 300 bodies of 1 MiB, or 300 fields of 56 KiB, held past the call: over 16 MiB.
        let (scratch, run) = run_plugin_beside(
            "hoarder",
            json!({"hoard": hoard, "count": 300, "maxMemory": "16MiB",
                   "grants": {"http": ["http://127.0.0.1:9"]}}),
            &[],
            install_hoarder,
        );
        replaced_once_after_a_trap(&scratch, &run, "resource table", hoard);
    }
}

#[test]
fn the_resolver_answers_only_granted_names_and_never_floods_the_blocking_pool() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let granted = format!("localhost:{}", listener.local_addr().unwrap().port());
    let collector = oort_tests::http::HttpServer::start();
    let (scratch, run) = run_plugin_beside(
        "greedy",
        json!({"journal": "out/journal.txt", "telemetryUrl": collector.url("/t"),
               "lookup": "localhost", "lookupCount": 20_000,
               "exfiltrate": ["row-7-secret.exfil.invalid", "LOCALHOST.", "example.com"],
               "grants": {"sockets": [granted]}}),
        &[],
        install_greedy,
    );
    run.assert_ok();
    others_delivered(&scratch, &run);
    let journal = scratch.read("out/journal.txt");
    assert!(
        journal.contains(r#"lookups started 20000 refused none answer Ok(["127.0.0.1"])"#),
        "20,000 lookups of the granted name are answered from the host's set: {journal}"
    );
    assert!(
        ["row-7-secret.exfil.invalid", "example.com"]
            .iter()
            .all(|name| journal
                .lines()
                .any(|l| l.starts_with(&format!("lookup {name}: Err("))
                    && l.contains("permanent-resolver-failure"))),
        "an ungranted name is refused without a query: {journal}"
    );
    assert!(
        journal.contains(r#"lookup LOCALHOST.: Ok(["127.0.0.1"])"#),
        "a granted name in another spelling: {journal}"
    );
    assert_eq!(
        run.stderr.matches("not a granted name").count(),
        1,
        "the refusals are logged once: {}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(r#"name lookup of "row-7-secret.exfil.invalid" refused"#),
        "{}",
        run.stderr
    );
}
