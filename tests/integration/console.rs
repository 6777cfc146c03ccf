//! The web console (`/ui`) in a real browser: Debian's headless Chromium driven over WebDriver
//! (chromedriver) against a real `oort serve` with rules reading a real MQTT broker and writing
//! through a wasm sink. Screenshots go to `target/console-screenshots/`.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fantoccini::Locator;
use oort_tests::broker::{Broker, publish_all};
use oort_tests::browser::Browser;
use oort_tests::console::{UpdateCost, first_event, load_average, paint};
use serde_json::{Value as Json, json};

use crate::common::{Scratch, wait_for};
use crate::serve::{Server, numbers, scratch_for};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Copies the `Versioned` sink builds into `<scratch>/<v1|v2>/`; answers the `file` body field.
/// Messages `{"n": …}` published to `topic` on the broker at `port`, `step` at a time every
/// `every`, until [`Flow::stop`]: rows flowing for as long as a test looks at the console.
struct Flow {
    flowing: Arc<AtomicBool>,
    publisher: std::thread::JoinHandle<()>,
}

impl Flow {
    fn start(port: u16, topic: &'static str, step: usize, every: Duration) -> Self {
        let flowing = Arc::new(AtomicBool::new(true));
        let publisher = {
            let flowing = Arc::clone(&flowing);
            std::thread::spawn(move || {
                let mut n = 0;
                while flowing.load(Ordering::Relaxed) {
                    publish_all(port, topic, numbers(n..n + step));
                    n += step;
                    std::thread::sleep(every);
                }
            })
        };
        Self { flowing, publisher }
    }

    fn stop(self) {
        self.flowing.store(false, Ordering::Relaxed);
        self.publisher.join().unwrap();
    }
}

fn versioned_builds(scratch: &Scratch) -> impl Fn(&str) -> String {
    use oort_tests::guests;
    for (dir, wasm, manifest) in [
        ("v1", guests::VERSIONED_V1, guests::VERSIONED_V1_MANIFEST),
        ("v2", guests::VERSIONED_V2, guests::VERSIONED_V2_MANIFEST),
    ] {
        std::fs::create_dir_all(scratch.path().join(dir)).unwrap();
        std::fs::copy(wasm, scratch.path().join(dir).join("Versioned.wasm")).unwrap();
        if std::path::Path::new(manifest).is_file() {
            std::fs::copy(manifest, scratch.path().join(dir).join("Versioned.json")).unwrap();
        }
    }
    let root = scratch.path().to_path_buf();
    move |dir| format!("file://{}/{dir}/Versioned.wasm", root.display())
}

#[test]
fn the_console_shows_rules_rates_errors_swaps_and_stops() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let scratch = scratch_for(&broker);
    let file = versioned_builds(&scratch);
    let server = Server::start(&scratch, &["--mqtt-conf", "etc/mqtt_source.yaml"]);
    let install = json!({ "name": "Versioned", "file": file("v1") }).to_string();
    assert_eq!(server.call("POST", "/plugins/sinks", Some(&install)).0, 201);
    let stream = r#"{"sql":"CREATE STREAM s (n bigint) WITH (DATASOURCE=\"in/c\")"}"#;
    assert_eq!(server.call("POST", "/streams", Some(stream)).0, 201);
    let rule =
        r#"{"id":"live","sql":"SELECT n FROM s","actions":[{"versioned":{"path":"out/c.jsonl"}}]}"#;
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    let idle = r#"{"id":"idle","sql":"SELECT n FROM s WHERE n < 0","actions":[{"nop":{}}],"triggered":false}"#;
    assert_eq!(server.call("POST", "/rules", Some(idle)).0, 201);
    server.wait_log("subscribed to", 1);

    // Rows flow for as long as the test looks at the console.
    let flow = Flow::start(broker.port, "in/c", 20, Duration::from_millis(100));

    let ui = format!("http://127.0.0.1:{}/ui", server.port);
    runtime().block_on(async {
        let Some(browser) = Browser::start().await else {
            return;
        };
        let c = &browser.client;

        // The list shows both rules, their status in words, and the live rate moves.
        c.goto(&format!("{ui}#/rules")).await.unwrap();
        let status = browser
            .until(
                "the live rule to show as running",
                r#"const s = document.querySelector('tr[data-rule="live"] .status');
                   return s && s.textContent.includes('Running') ? s.textContent : null"#,
            )
            .await;
        assert!(status.as_str().unwrap().contains('▶'), "{status}");
        let idle = browser
            .until(
                "the idle rule",
                r#"return document.querySelector('tr[data-rule="idle"] .status')?.textContent ?? null"#,
            )
            .await;
        assert!(idle.as_str().unwrap().contains("Stopped"), "{idle}");
        let rate = browser
            .until(
                "a rate above zero",
                r#"const r = document.querySelector('tr[data-rule="live"] .rate-in');
                   return r && parseFloat(r.textContent.replace(/,/g, '')) > 0 ? r.textContent : null"#,
            )
            .await;
        eprintln!("rows in per second shown: {rate}");
        // Ten seconds of history in the sparkline for the picture.
        browser
            .until(
                "ten points of rate history",
                r#"const p = document.querySelector('tr[data-rule="live"] polyline');
                   return p && p.getAttribute('points').split(' ').length >= 10 || null"#,
            )
            .await;
        browser.shot("rules.png").await;

        // Bad SQL: the server's error, at the line and column it names.
        c.goto(&format!("{ui}#/new")).await.unwrap();
        browser.type_into("#rule-id", "bad").await;
        browser
            .type_into("#rule-sql", "SELECT n\nFROM s WHER n > 1")
            .await;
        let at = browser
            .until(
                "the SQL error",
                r#"const v = document.querySelector('#verdict[data-valid="false"][data-line]');
                   return v ? [v.dataset.line, v.dataset.column, v.textContent] : null"#,
            )
            .await;
        assert_eq!((at[0].as_str(), at[1].as_str()), (Some("2"), Some("13")), "{at}");
        assert!(at[2].as_str().unwrap().contains("line 2, column 13"), "{at}");
        let marked = c
            .execute("return document.querySelector('.gutter .err')?.textContent", vec![])
            .await
            .unwrap();
        assert_eq!(marked, json!("2"), "the gutter marks the line");
        browser.shot("bad-sql.png").await;
        // Fixed, the same form says it is valid.
        browser
            .type_into("#rule-sql", "SELECT n\nFROM s WHERE n > 1")
            .await;
        browser
            .until(
                "the fixed SQL to validate",
                r#"return document.querySelector('#verdict[data-valid="true"]')?.textContent ?? null"#,
            )
            .await;

        // The rule's page: topology with edge rates, and the sink build running.
        c.goto(&format!("{ui}#/rule/live")).await.unwrap();
        browser
            .until(
                "the topology's edges",
                r#"return document.querySelectorAll('.graph [data-edge]').length === 2 || null"#,
            )
            .await;
        let before = browser
            .until(
                "the sink version",
                r#"const v = document.querySelector('tr[data-sink="sink_versioned_0"] .version');
                   return v && v.textContent.length > 2 ? v.textContent : null"#,
            )
            .await;

        // A new build uploaded from this computer on the plugins page: every rule using it says
        // whether it took over.
        c.goto(&format!("{ui}#/plugins")).await.unwrap();
        browser
            .until(
                "the plugin to be listed",
                r#"return document.querySelector('[data-plugin="Versioned"] .plugin-version')?.textContent ?? null"#,
            )
            .await;
        let v2 = scratch.path().join("v2/Versioned.wasm");
        c.find(Locator::Css("#plugin-wasm"))
            .await
            .unwrap()
            .send_keys(&v2.display().to_string())
            .await
            .unwrap();
        let manifest = v2.with_extension("json");
        if manifest.is_file() {
            c.find(Locator::Css("#plugin-manifest"))
                .await
                .unwrap()
                .send_keys(&manifest.display().to_string())
                .await
                .unwrap();
        }
        let named = c
            .execute("return document.querySelector('#plugin-name').value", vec![])
            .await
            .unwrap();
        assert_eq!(named, json!("Versioned"), "the name comes from the file");
        c.find(Locator::Css("#plugin-form button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let swapped = browser
            .until(
                "the swap result",
                r#"return document.querySelector('#upload-result [data-reloaded="live"]')?.textContent ?? null"#,
            )
            .await;
        assert!(swapped.as_str().unwrap().contains("took over"), "{swapped}");
        browser.shot("plugin-swap.png").await;
        c.goto(&format!("{ui}#/rule/live")).await.unwrap();
        let after = browser
            .until(
                "the new sink version",
                &format!(
                    r#"const v = document.querySelector('tr[data-sink="sink_versioned_0"] .version');
                       return v && v.textContent.length > 2 && v.textContent !== {before} ? v.textContent : null"#
                ),
            )
            .await;
        assert_ne!(before, after);
        // The reload history comes from the server: this page was opened after the swap.
        let swap = browser
            .until(
                "the swap in the reload history",
                r#"return document.querySelector('[data-histories="sink_versioned_0"] .reload-history li[data-swapped]')?.textContent ?? null"#,
            )
            .await;
        let swap = swap.as_str().unwrap();
        assert!(swap.contains("swap pause") && swap.contains(" → "), "{swap}");
        assert!(swap.contains(after.as_str().unwrap()), "{swap} names {after}");
        browser.shot("rule.png").await;

        // Stopping from the list, with the keyboard: the status changes, in words.
        c.goto(&format!("{ui}#/rules")).await.unwrap();
        let stop = c
            .wait()
            .for_element(Locator::Css(r#"tr[data-rule="live"] button[data-action="stop"]"#))
            .await
            .unwrap();
        stop.send_keys("\u{E007}").await.unwrap();
        let stopped = browser
            .until(
                "the rule to show as stopped",
                r#"const s = document.querySelector('tr[data-rule="live"] .status');
                   return s && s.dataset.status === 'stopped' ? s.textContent : null"#,
            )
            .await;
        assert!(stopped.as_str().unwrap().contains("Stopped"), "{stopped}");
        browser.shot("stopped.png").await;
        browser.close().await;
    });
    flow.stop();
    assert_eq!(
        server.json("GET", "/rules/live/status", None).1["status"],
        "stopped"
    );
    server.stop();
}

/// The first frame is the page alone: its header and the rules list's empty frame in one face
/// at one size (each other weight or size is a font lookup the first layout waits on), and
/// neither module is fetched before that frame is painted.
#[test]
fn the_first_frame_is_the_page_in_one_face_and_the_scripts_come_after_it() {
    let scratch = Scratch::new();
    let server = Server::start(&scratch, &[]);
    let ui = format!("http://127.0.0.1:{}/ui", server.port);
    runtime().block_on(async {
        let Some(browser) = Browser::start().await else {
            return;
        };
        browser.client.goto(&ui).await.unwrap();
        let got = browser
            .until(
                "the first paint and the list",
                r#"const fcp = performance.getEntriesByName('first-contentful-paint')[0];
                   if (!fcp || !performance.getEntriesByName('oort-rules-rendered')[0]) return null;
                   const fonts = new Set();
                   const frame = [document.querySelector('header'), ...document.querySelectorAll('#rules-frame > h1, #rules-frame .toolbar, #rules-frame caption, #rules-frame thead')];
                   for (const root of frame) for (const e of [root, ...root.querySelectorAll('*')]) {
                     if (![...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim()) && e.tagName !== 'INPUT') continue;
                     const c = getComputedStyle(e);
                     fonts.add(`${c.fontFamily} ${c.fontWeight} ${c.fontSize} ${c.fontStyle}`);
                   }
                   const scripts = performance.getEntriesByType('resource')
                     .filter((r) => r.name.endsWith('.js'))
                     .map((r) => [new URL(r.name).pathname, r.startTime]);
                   return [fcp.startTime, [...fonts], scripts]"#,
            )
            .await;
        let fcp = got[0].as_f64().unwrap();
        assert_eq!(got[1].as_array().unwrap().len(), 1, "one face and size: {got}");
        let scripts = got[2].as_array().unwrap();
        let names: Vec<&str> = scripts.iter().map(|s| s[0].as_str().unwrap()).collect();
        assert_eq!(names.len(), 2, "{got}");
        assert!(names.contains(&"/ui/app.js") && names.contains(&"/ui/live.js"), "{got}");
        for s in scripts {
            assert!(
                s[1].as_f64().unwrap() >= fcp,
                "{} fetched before the first paint at {fcp} ms: {got}",
                s[0]
            );
        }
        browser.close().await;
    });
    server.stop();
}

/// A rule whose input ended with an event-time window still open: its page says how many
/// windows and rows the query left unsent; a rule that left none says nothing of it.
#[test]
fn the_rule_page_shows_the_windows_and_rows_left_at_the_end_of_the_input() {
    let scratch = Scratch::new();
    scratch.write(
        "data/ticks.jsonl",
        "{\"n\":1,\"ts\":1000}\n{\"n\":2,\"ts\":12000}\n{\"n\":3,\"ts\":13000}\n",
    );
    let server = Server::start(&scratch, &[]);
    let stream = r#"{"sql":"CREATE STREAM ticks (n bigint, ts bigint) WITH (TYPE=\"file\", DATASOURCE=\"ticks.jsonl\", TIMESTAMP=\"ts\")"}"#;
    assert_eq!(server.call("POST", "/streams", Some(stream)).0, 201);
    let windowed = r#"{"id":"w","sql":"SELECT count(*) AS c FROM ticks GROUP BY TUMBLINGWINDOW(ss, 10)","actions":[{"nop":{}}],"options":{"isEventTime":true,"lateTolerance":0}}"#;
    assert_eq!(server.call("POST", "/rules", Some(windowed)).0, 201);
    let plain = r#"{"id":"plain","sql":"SELECT n FROM ticks","actions":[{"nop":{}}]}"#;
    assert_eq!(server.call("POST", "/rules", Some(plain)).0, 201);
    server.wait_status("w", "stopped");
    server.wait_status("plain", "stopped");
    let ui = format!("http://127.0.0.1:{}/ui", server.port);
    runtime().block_on(async {
        let Some(browser) = Browser::start().await else {
            return;
        };
        let c = &browser.client;
        c.goto(&format!("{ui}#/rule/w")).await.unwrap();
        let left = browser
            .until(
                "what the query left at the end",
                r#"const p = document.querySelector('.at-end');
                   return p && !p.hidden ? [p.dataset.windows, p.dataset.rows, p.textContent] : null"#,
            )
            .await;
        assert_eq!((left[0].as_str(), left[1].as_str()), (Some("1"), Some("2")), "{left}");
        let text = left[2].as_str().unwrap();
        assert!(text.contains("1 window open") && text.contains("2 rows held"), "{text}");
        browser.shot("rule-left-at-end.png").await;
        c.goto(&format!("{ui}#/rule/plain")).await.unwrap();
        let shown = browser
            .until(
                "the plain rule's page, drawn from its first event",
                r#"const p = document.querySelector('.at-end');
                   const drawn = document.querySelector('main h1')?.textContent === 'Rule plain'
                     && document.querySelector('#rule-status [data-status="stopped"]');
                   return p && drawn ? [p.hidden, p.dataset.rows] : null"#,
            )
            .await;
        assert_eq!(shown, json!([true, "0"]), "nothing left, nothing said");
        browser.close().await;
    });
    server.stop();
}

/// The console's figures with 1,000 running rules: first paint of `/ui` in Chromium, the
/// server's CPU spent on live updates, and the bytes each update takes.
#[test]
fn the_console_with_a_thousand_rules() {
    const RULES: usize = 1000;
    const RUNNING: usize = 1000;
    let Some(broker) = Broker::start() else {
        return;
    };
    let scratch = scratch_for(&broker);
    let server = Server::start(&scratch, &["--mqtt-conf", "etc/mqtt_source.yaml"]);
    let stream = r#"{"sql":"CREATE STREAM s (n bigint) WITH (DATASOURCE=\"in/many\")"}"#;
    assert_eq!(server.call("POST", "/streams", Some(stream)).0, 201);
    // The page's answer time with no rule, to tell the rules' share from the machine's load.
    let idle_page_ms = page_times(server.port);
    let mut rules = serde_json::Map::new();
    for i in 0..RULES {
        let rule = json!({
            "id": format!("rule{i:04}"),
            "sql": "SELECT n FROM s",
            "actions": [{ "nop": {} }],
            "triggered": i < RUNNING,
        });
        rules.insert(format!("rule{i:04}"), json!(rule.to_string()));
    }
    scratch.write("ruleset.json", &json!({ "rules": rules }).to_string());
    let import = json!({ "file": scratch.path().join("ruleset.json") }).to_string();
    let (status, answer) = server.call("POST", "/ruleset/import", Some(&import));
    assert_eq!(status, 200, "{answer}");
    wait_for("every rule to run", Duration::from_secs(300), || {
        let (_, listed) = server.json("GET", "/rules", None);
        listed.as_array().is_some_and(|rules| {
            rules.iter().filter(|r| r["status"] == "Running").count() == RUNNING
        })
    });
    server.wait_log("subscribed to", RUNNING);
    let flow = Flow::start(broker.port, "in/many", 10, Duration::from_millis(200));

    // The HTTP thread's CPU (where the live updates are built and sent) with nobody
    // watching, then with one console's list stream open: the rules' own work is not in it.
    let cost = UpdateCost::measure(
        server.pid(),
        server.port,
        "/events/rules",
        Duration::from_secs(20),
    );
    assert!(cost.events.len() >= 15, "one event a second: {cost:?}");
    // Rows flow into every rule all along: every steady event holds most of the 1,000 rules
    // (about 30 bytes each).
    assert!(
        cost.events[1..].iter().all(|&n| n > 10_000),
        "every rule's counters move: {cost:?}"
    );
    let rule_sizes = oort_tests::console::event_sizes(
        server.port,
        "/events/rules/rule0000",
        Duration::from_secs(4),
    );
    assert!(rule_sizes.len() >= 3, "{rule_sizes:?}");
    eprintln!(
        "FIGURES rules={RULES} running={RUNNING}: {}; one rule's events: {rule_sizes:?} bytes",
        cost.summary()
    );

    // The server's side of the first paint, from outside a browser: the page, and the first
    // list event the rows are drawn from.
    let page_ms = page_times(server.port);
    let started = Instant::now();
    let listed = first_event(server.port, "/events/rules");
    let event_ms = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(listed["rules"].as_object().unwrap().len(), RULES);
    eprintln!(
        "FIGURES server: GET /ui answered in {page_ms:?} ms with {RUNNING} rules running \
         ({idle_page_ms:?} ms with none), the first list event in {event_ms:.1} ms"
    );

    let ui = format!("http://127.0.0.1:{}/ui", server.port);
    runtime().block_on(async {
        let Some(browser) = Browser::start().await else {
            return;
        };
        browser.client.goto(&ui).await.unwrap();
        let shown = browser
            .until(
                "the list's page count",
                r#"return document.querySelector('#page-info')?.textContent ?? null"#,
            )
            .await;
        assert_eq!(shown, json!("Page 1 of 20 · 1000 rules"));
        let first = paint(&browser).await;
        // A second visit: the browser and its renderer are warm.
        browser.client.goto("about:blank").await.unwrap();
        browser.client.goto(&ui).await.unwrap();
        let again = paint(&browser).await;
        for (visit, p) in [("first", first), ("second", again)] {
            eprintln!(
                "FIGURES {visit} visit: first contentful paint {:.1} ms, list of rules drawn \
                 {:.1} ms; {}",
                p.first_contentful_ms, p.list_ms, p.detail
            );
        }
        eprintln!("FIGURES load average (1, 5, 15 min): {}", load_average());
        browser
            .until(
                "rates on the first page",
                r#"return [...document.querySelectorAll('#rules .rate-in')].some(r => parseFloat(r.textContent) > 0) || null"#,
            )
            .await;
        browser.shot("thousand-rules.png").await;
        browser.close().await;
    });
    flow.stop();
    server.stop();
}

/// `POST /plugins/sinks/{name}/upload` with the body in a file (`curl --data-binary @file`).
fn upload(server: &Server, scratch: &Scratch, name: &str, body: &[u8]) -> (u16, Json) {
    let path = scratch.path().join("upload-body");
    std::fs::write(&path, body).unwrap();
    let url = format!(
        "http://127.0.0.1:{}/plugins/sinks/{name}/upload",
        server.port
    );
    let out = Command::new("curl")
        .args(["-s", "-S", "-X", "POST", "-w", "\n%{http_code}", &url])
        .args(["-H", "Content-Type: application/json", "-H", "Expect:"])
        .arg("--data-binary")
        .arg(format!("@{}", path.display()))
        .output()
        .expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    let status = status.parse().unwrap_or_else(|_| panic!("{out:?}"));
    let json = serde_json::from_str(body).unwrap_or_else(|_| json!(body));
    (status, json)
}

fn upload_body(wasm: &str, manifest: Option<&str>, filename: &str) -> Vec<u8> {
    let bytes = std::fs::read(wasm).unwrap();
    let manifest = manifest
        .filter(|m| std::path::Path::new(m).is_file())
        .map(|m| std::fs::read_to_string(m).unwrap());
    json!({
        "wasm": oort_value::base64::encode(&bytes),
        "manifest": manifest,
        "filename": filename,
    })
    .to_string()
    .into_bytes()
}

/// Uploads get the checks of a file install (and a clear 413 past the limit), swap the build
/// in running rules, and every reload, refused build, trap and dead letter is kept in the
/// rule's status for the console to show.
#[test]
fn uploads_swap_builds_and_the_status_keeps_reloads_traps_and_dead_letters() {
    use oort_tests::guests;
    let Some(broker) = Broker::start() else {
        return;
    };
    let scratch = scratch_for(&broker);
    let server = Server::start(&scratch, &["--mqtt-conf", "etc/mqtt_source.yaml"]);

    // Refused before anything is written: not base64, not a component, too large.
    let (status, err) = upload(&server, &scratch, "Uploaded", br#"{"wasm":"%%%"}"#);
    assert_eq!(status, 400, "{err}");
    assert!(err["message"].as_str().unwrap().contains("base64"), "{err}");
    let not_a_sink = upload_body(guests::NOT_A_SINK, None, "other-world.wasm");
    let (status, err) = upload(&server, &scratch, "Uploaded", &not_a_sink);
    assert_eq!(status, 400, "{err}");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains("other-world.wasm") && !message.contains(".uploads"),
        "the error names the file sent: {message}"
    );
    let mut huge = br#"{"wasm":""#.to_vec();
    huge.resize(65 << 20, b'A');
    let (status, err) = upload(&server, &scratch, "Uploaded", &huge);
    assert_eq!(status, 413, "{err}");
    assert!(err["message"].as_str().unwrap().contains("64 MiB"), "{err}");
    let (status, listed) = server.json("GET", "/plugins/sinks", None);
    assert_eq!(status, 200);
    assert!(!listed.to_string().contains("Uploaded"), "{listed}");

    // v1 uploaded, a rule running it, then v2 and a build that refuses its props.
    let v1 = upload_body(
        guests::VERSIONED_V1,
        Some(guests::VERSIONED_V1_MANIFEST),
        "v1.wasm",
    );
    let (status, answer) = upload(&server, &scratch, "Uploaded", &v1);
    assert_eq!(
        (status, answer.clone()),
        (201, json!("Plugin Uploaded is created."))
    );
    let (_, described) = server.json("GET", "/plugins/sinks/Uploaded", None);
    assert_eq!(described["source"], "upload: v1.wasm", "{described}");
    let stream = r#"{"sql":"CREATE STREAM s (n bigint) WITH (DATASOURCE=\"in/u\")"}"#;
    assert_eq!(server.call("POST", "/streams", Some(stream)).0, 201);
    let rule =
        r#"{"id":"up","sql":"SELECT n FROM s","actions":[{"uploaded":{"path":"out/u.jsonl"}}]}"#;
    let (status, answer) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{answer}");
    // The probe traps in every `collect`: each batch is tried three times, then dead-lettered.
    let trapping = json!({"id": "trapping", "sql": "SELECT n FROM s", "actions": [{"probe": {
        "journal": "out/journal.txt", "failPhase": "collect", "failKind": "trap",
        "deadLetter": "dead.jsonl"}}]});
    let (status, answer) = server.call("POST", "/rules", Some(&trapping.to_string()));
    assert_eq!(status, 201, "{answer}");
    server.wait_log("subscribed to", 2);
    // Rows until v1 has written some (a subscription may take a moment to be in place).
    let mut sent = 0;
    let mut last = Json::Null;
    let started = Instant::now();
    while last["sink_uploaded_0_0_records_out_total"]
        .as_u64()
        .unwrap_or(0)
        == 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no rows from v1: {last}"
        );
        publish_all(broker.port, "in/u", numbers(sent..sent + 5));
        sent += 5;
        std::thread::sleep(Duration::from_millis(200));
        last = server.json("GET", "/rules/up/status", None).1;
    }
    let v2 = upload_body(
        guests::VERSIONED_V2,
        Some(guests::VERSIONED_V2_MANIFEST),
        "v2.wasm",
    );
    let (status, answer) = upload(&server, &scratch, "Uploaded", &v2);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["reloaded"][0]["rule"], "up", "{answer}");
    let bad = upload_body(
        guests::VERSIONED_BAD_CONFIG,
        Some(guests::VERSIONED_BAD_CONFIG_MANIFEST),
        "bad.wasm",
    );
    let (status, answer) = upload(&server, &scratch, "Uploaded", &bad);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["refused"][0]["rule"], "up", "{answer}");
    // The swap is taken at the next batch.
    publish_all(broker.port, "in/u", numbers(sent..sent + 5));
    let history = |status: &Json| {
        status["sink_uploaded_0_0_reload_history"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    wait_for("the swap in the history", Duration::from_secs(30), || {
        history(&server.json("GET", "/rules/up/status", None).1)
            .iter()
            .any(|r| r["pause_us"].is_u64())
    });
    let status = server.json("GET", "/rules/up/status", None).1;
    let reloads = history(&status);
    let version =
        |path: &str| blake3::hash(&std::fs::read(path).unwrap()).to_hex()[..16].to_string();
    let refused = reloads
        .iter()
        .find(|r| r["refused"].is_string())
        .unwrap_or_else(|| panic!("a refused build: {reloads:?}"));
    assert_eq!(refused["from"], version(guests::VERSIONED_V2), "{refused}");
    assert_eq!(
        refused["to"],
        version(guests::VERSIONED_BAD_CONFIG),
        "{refused}"
    );
    assert!(
        refused["refused"]
            .as_str()
            .unwrap()
            .contains("configure failed"),
        "{refused}"
    );
    let swapped = reloads.iter().find(|r| r["pause_us"].is_u64()).unwrap();
    assert_eq!(swapped["from"], version(guests::VERSIONED_V1), "{swapped}");
    assert_eq!(swapped["to"], version(guests::VERSIONED_V2), "{swapped}");
    assert!(swapped["at"].as_str().unwrap().ends_with('Z'), "{swapped}");

    // Traps and dead letters, with their messages.
    wait_for("dead letters", Duration::from_secs(30), || {
        server.json("GET", "/rules/trapping/status", None).1["sink_probe_0_0_dead_letter_total"]
            .as_u64()
            .is_some_and(|n| n >= 10)
    });
    let status = server.json("GET", "/rules/trapping/status", None).1;
    let traps = status["sink_probe_0_0_trap_history"].as_array().unwrap();
    assert!(!traps.is_empty(), "{status}");
    assert!(traps.len() <= 20, "at most 20 are kept: {}", traps.len());
    assert!(traps[0]["message"].as_str().unwrap().len() > 3, "{traps:?}");
    let dead = status["sink_probe_0_0_dead_letter_history"]
        .as_array()
        .unwrap();
    assert!(!dead.is_empty(), "{status}");
    assert!(
        dead.iter()
            .all(|d| d["message"].as_str().unwrap().contains("poison")),
        "{dead:?}"
    );
    assert_eq!(
        dead.iter()
            .map(|d| d["rows"].as_u64().unwrap())
            .sum::<u64>(),
        status["sink_probe_0_0_dead_letter_total"].as_u64().unwrap(),
        "{dead:?}"
    );

    // Late rows: event time with no tolerance, a row older than the watermark.
    let late_stream = r#"{"sql":"CREATE STREAM t (n bigint, ts bigint) WITH (DATASOURCE=\"in/late\", TIMESTAMP=\"ts\")"}"#;
    assert_eq!(server.call("POST", "/streams", Some(late_stream)).0, 201);
    let late = json!({"id": "late", "sql": "SELECT count(*) AS c FROM t GROUP BY TUMBLINGWINDOW(ss, 1)",
        "actions": [{"nop": {}}], "options": {"isEventTime": true, "lateTolerance": 0}});
    let (status, answer) = server.call("POST", "/rules", Some(&late.to_string()));
    assert_eq!(status, 201, "{answer}");
    server.wait_log("subscribed to", 3);
    let started = Instant::now();
    let mut ts = 100_000;
    while server.json("GET", "/rules/late/status", None).1["op_project_0_late_total"]
        .as_u64()
        .unwrap_or(0)
        == 0
    {
        assert!(started.elapsed() < Duration::from_secs(30), "no late row");
        ts += 10_000;
        let rows = [json!({"n": 1, "ts": ts}), json!({"n": 2, "ts": 1000})];
        publish_all(
            broker.port,
            "in/late",
            rows.iter()
                .map(|r| r.to_string().into_bytes())
                .collect::<Vec<_>>(),
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let listed = first_event(server.port, "/events/rules");
    assert!(
        listed["rules"]["late"][4].as_u64().is_some_and(|n| n > 0),
        "the list's summary counts late rows: {listed}"
    );

    // The console shows them: late rows in the list, traps and dead letters on the rule page.
    let ui = format!("http://127.0.0.1:{}/ui", server.port);
    runtime().block_on(async {
        let Some(browser) = Browser::start().await else {
            return;
        };
        let c = &browser.client;
        c.goto(&format!("{ui}#/rules")).await.unwrap();
        browser
            .until(
                "late rows in the list",
                r#"const l = document.querySelector('tr[data-rule="late"] .late');
                   return l && parseInt(l.textContent) > 0 ? l.textContent : null"#,
            )
            .await;
        c.goto(&format!("{ui}#/rule/trapping")).await.unwrap();
        let trap = browser
            .until(
                "a trap on the rule page",
                r#"return document.querySelector('[data-histories="sink_probe_0"] .traps li')?.textContent ?? null"#,
            )
            .await;
        assert!(trap.as_str().unwrap().contains("row(s)"), "{trap}");
        let dead = browser
            .until(
                "a dead letter on the rule page",
                r#"return document.querySelector('[data-histories="sink_probe_0"] .dead-letters li')?.textContent ?? null"#,
            )
            .await;
        assert!(dead.as_str().unwrap().contains("poison"), "{dead}");
        browser.shot("rule-traps.png").await;
        browser.close().await;
    });
    server.stop();
}

/// An open live-update stream (a console left open) ends when the server stops, instead of
/// holding up its shutdown.
#[test]
fn an_open_event_stream_ends_when_the_server_stops() {
    use std::io::{BufRead, BufReader, Write};
    let scratch = Scratch::new();
    let server = Server::start(&scratch, &[]);
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(
        socket,
        "GET /events/rules HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(socket);
    let mut line = String::new();
    while !line.starts_with("event: rules") {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the stream ended early"
        );
    }
    let started = Instant::now();
    server.stop();
    eprintln!("stopped in {:?} with a stream open", started.elapsed());
    // The stream's end reached the client: the connection closes.
    reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => rest.push_str(&line),
            Err(e) => panic!("the stream did not end: {e}; read {rest:?}"),
        }
    }
}

/// Five `GET /ui` in a row: each one's time to the whole answer, in ms, sorted.
fn page_times(port: u16) -> Vec<u32> {
    let mut times: Vec<u32> = (0..5)
        .map(|_| {
            let started = Instant::now();
            http_get(port, "/ui");
            started.elapsed().as_millis() as u32
        })
        .collect();
    times.sort_unstable();
    times
}

/// `GET path` (HTTP/1.0, so the server closes): the whole answer.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(socket, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
    answer
}

/// The cache depth history the server keeps per action: an outage fills the cache and the
/// recovery drains it; the status holds both, and the rule page opened only afterwards draws
/// the peak.
#[test]
fn the_server_keeps_the_cache_depth_history_and_the_rule_page_draws_it() {
    const ROWS: u64 = 10;
    let Some(broker) = Broker::start() else {
        return;
    };
    let scratch = scratch_for(&broker);
    scratch.write("down.flag", "");
    let server = Server::start(&scratch, &["--mqtt-conf", "etc/mqtt_source.yaml"]);
    let stream = r#"{"sql":"CREATE STREAM s (n bigint) WITH (DATASOURCE=\"in/c\")"}"#;
    assert_eq!(server.call("POST", "/streams", Some(stream)).0, 201);
    // The outage switch by its full path (a relative one is read from the rule's folder).
    let switch = scratch.path().join("down.flag");
    let rule = json!({"id": "cached", "sql": "SELECT n FROM s", "actions": [{"probe": {
        "journal": "out/journal.txt", "downWhile": switch, "enableCache": true,
        "retryCount": 1, "retryInterval": 5, "resendInterval": 10}}]});
    let (status, answer) = server.call("POST", "/rules", Some(&rule.to_string()));
    assert_eq!(status, 201, "{answer}");
    server.wait_log("subscribed to", 1);
    let action = |key: &str| {
        server.json("GET", "/rules/cached/status", None).1[format!("sink_probe_0_0_{key}")].clone()
    };
    wait_for("the action's status", Duration::from_secs(30), || {
        action("cached") == json!(0)
    });
    assert_eq!(action("cache_history"), json!([]), "no change yet");

    // The sink is down: every row ends up in the cache.
    publish_all(broker.port, "in/c", numbers(0..ROWS as usize));
    wait_for("the rows cached", Duration::from_secs(30), || {
        action("cached") == json!(ROWS)
    });
    // It is back: the cache drains.
    std::fs::remove_file(&switch).unwrap();
    wait_for("the cache resent", Duration::from_secs(30), || {
        action("cached") == json!(0) && action("records_out_total") == json!(ROWS)
    });
    let history = action("cache_history");
    let points = history.as_array().unwrap();
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for p in points {
        let p: Vec<u64> = p
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(p.len(), 3, "[unix s, peak, end]: {history}");
        assert!(p[0] <= now_s && p[0] + 120 > now_s, "{history}");
        assert!(p[1] >= p[2] && p[1] <= ROWS, "{history}");
    }
    let peak = points.iter().map(|p| p[1].as_u64().unwrap()).max();
    assert_eq!(
        peak,
        Some(ROWS),
        "the full cache is in the history: {history}"
    );
    assert_eq!(
        points.last().unwrap()[2],
        0,
        "drained at the end: {history}"
    );
    let seconds: Vec<u64> = points.iter().map(|p| p[0].as_u64().unwrap()).collect();
    assert!(
        seconds.windows(2).all(|w| w[0] < w[1]),
        "one point a second: {history}"
    );

    // The rule page, opened after the cache drained, draws the peak from the server's history.
    let ui = format!("http://127.0.0.1:{}/ui", server.port);
    runtime().block_on(async {
        let Some(browser) = Browser::start().await else {
            return;
        };
        browser
            .client
            .goto(&format!("{ui}#/rule/cached"))
            .await
            .unwrap();
        let peak = browser
            .until(
                "the cache depth's peak on the rule page",
                r#"const s = document.querySelector('tr[data-sink="sink_probe_0"] .cache-depth');
                   return s && s.dataset.peak !== '0' ? [s.dataset.peak, s.getAttribute('aria-label'),
                     s.querySelector('polyline').getAttribute('points').split(' ').length] : null"#,
            )
            .await;
        assert_eq!(peak[0], json!(ROWS.to_string()), "{peak}");
        assert!(
            peak[1].as_str().unwrap().contains(&format!("peak {ROWS}")),
            "{peak}"
        );
        browser.shot("rule-cache-depth.png").await;
        browser.close().await;
    });
    server.stop();
}

/// What the browser asked of the server, from the DevTools network events: each request's URL
/// and `Authorization` header, each answer's URL and status, by DevTools request id.
#[derive(Debug, Default)]
struct Traffic {
    requests: Vec<(String, String, Option<String>)>,
    answers: Vec<(String, String, u64)>,
}

impl Traffic {
    /// Adds the events recorded since the last read.
    async fn read(&mut self, browser: &Browser) {
        for event in browser.network_log().await {
            let params = &event["params"];
            let id = params["requestId"].as_str().unwrap_or_default().to_string();
            match event["method"].as_str() {
                Some("Network.requestWillBeSent") => {
                    let request = &params["request"];
                    let authorization = request["headers"].as_object().and_then(|h| {
                        h.iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                            .and_then(|(_, v)| v.as_str().map(str::to_string))
                    });
                    let url = request["url"].as_str().unwrap_or_default().to_string();
                    self.requests.push((id, url, authorization));
                }
                Some("Network.responseReceived") => {
                    let response = &params["response"];
                    let url = response["url"].as_str().unwrap_or_default().to_string();
                    let status = response["status"].as_u64().unwrap_or_default();
                    self.answers.push((id, url, status));
                }
                _ => {}
            }
        }
    }

    /// The URLs answered 401 from the `from`-th answer on.
    fn refused_since(&self, from: usize) -> Vec<&str> {
        self.answers[from..]
            .iter()
            .filter(|(_, _, status)| *status == 401)
            .map(|(_, url, _)| url.as_str())
            .collect()
    }

    /// Whether a request for a URL ending in `path`, sent with `authorization` (or none), was
    /// answered `status`.
    fn answered(&self, path: &str, authorization: Option<&str>, status: u64) -> bool {
        self.answers.iter().any(|(id, url, got)| {
            *got == status
                && url.ends_with(path)
                && self
                    .requests
                    .iter()
                    .any(|(rid, _, auth)| rid == id && auth.as_deref() == authorization)
        })
    }

    /// Reads the events until `check` holds, for 30 s at most.
    async fn until(&mut self, browser: &Browser, what: &str, check: impl Fn(&Self) -> bool) {
        let started = Instant::now();
        loop {
            self.read(browser).await;
            if check(self) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what} in the browser's traffic: {self:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

const ENTER: char = '\u{E007}';
const TAB: char = '\u{E004}';
const ESCAPE: char = '\u{E00C}';

/// Types `text` on the keyboard (WebDriver's key codes for Enter, Tab, ...) into whatever has
/// the focus.
async fn press(browser: &Browser, text: &str) {
    use fantoccini::actions::{InputSource, KeyAction, KeyActions};
    let mut keys = KeyActions::new("keyboard".into());
    for value in text.chars() {
        keys = keys
            .then(KeyAction::Down { value })
            .then(KeyAction::Up { value });
    }
    browser.client.perform_actions(keys).await.unwrap();
}

/// Types `text` into whatever has the focus, then Enter.
async fn type_and_enter(browser: &Browser, text: &str) {
    press(browser, &format!("{text}{ENTER}")).await;
}

/// The id of the element with the focus.
async fn focused(browser: &Browser) -> Json {
    browser
        .client
        .execute("return document.activeElement?.id ?? null", vec![])
        .await
        .unwrap()
}

/// A script: the token dialog, open with the focus in its field, and the refusal it shows
/// (`""` when it shows none); with `refused`, only once it shows one.
fn asked(refused: bool) -> String {
    let none = if refused { "null" } else { "''" };
    format!(
        r#"const d = document.getElementById('token-dialog');
           const e = document.getElementById('token-error');
           return d.open && document.activeElement?.id === 'token-input'
             ? (e.hidden ? {none} : e.textContent) : null"#
    )
}

/// The console on a server that requires a bearer token. The first visit shows the token
/// dialog and no rule data (the server answered 401); a wrong token is said to be refused and
/// asked again; the right one shows the rule with live rates. It is asked once per tab: a
/// reload and moving between the views do not ask again, a new tab and a new browser do. It
/// goes in a header and never in a URL, the dialog works from the keyboard alone, and a token
/// the server stops accepting (restarted with another token file) leads back to the dialog.
#[test]
fn the_console_asks_for_the_token_once_per_tab_and_asks_again_when_it_is_refused() {
    const FIRST: &str = "first-token-4f1c2b";
    const SECOND: &str = "second-token-9a7e5d";
    const WRONG: &str = "wrong-token-0c3d8e";
    let Some(broker) = Broker::start() else {
        return;
    };
    let scratch = scratch_for(&broker);
    scratch.write("tokens", &format!("# the console's test\n{FIRST}\n"));
    scratch.write("rotated", &format!("{SECOND}\n"));
    let options = |tokens: &'static str| {
        [
            "--mqtt-conf",
            "etc/mqtt_source.yaml",
            "--token-file",
            tokens,
        ]
    };
    let server = Server::start(&scratch, &options("tokens")).with_token(FIRST);
    let port = server.port;
    let stream = r#"{"sql":"CREATE STREAM s (n bigint) WITH (DATASOURCE=\"in/t\")"}"#;
    assert_eq!(server.call("POST", "/streams", Some(stream)).0, 201);
    let rule = r#"{"id":"plant-meter","sql":"SELECT n FROM s","actions":[{"nop":{}}]}"#;
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    server.wait_log("subscribed to", 1);
    let flow = Flow::start(broker.port, "in/t", 10, Duration::from_millis(100));

    let ui = format!("http://127.0.0.1:{port}/ui");
    let server = runtime().block_on(async {
        let Some(browser) = Browser::start_recording_network().await else {
            return server;
        };
        let c = &browser.client;
        let mut traffic = Traffic::default();

        // First visit: the dialog, with the focus in its field, and no rule data.
        c.goto(&format!("{ui}#/rules")).await.unwrap();
        let refusal = browser.until("the token dialog", &asked(false)).await;
        assert_eq!(refusal, json!(""), "nothing refused yet");
        let shown = c
            .execute(
                "return [document.querySelectorAll('tr[data-rule]').length, document.body.innerText.includes('plant-meter'), document.getElementById('conn').textContent]",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(shown, json!([0, false, "token needed"]), "no rule data");
        traffic
            .until(&browser, "the list's events refused", |t| {
                t.answered("/events/rules", None, 401)
            })
            .await;
        browser.shot("token-dialog.png").await;

        // The dialog is labelled, its field too, and Tab goes from the field to its button.
        let labels = c
            .execute(
                r#"const d = document.getElementById('token-dialog');
                   return [document.getElementById(d.getAttribute('aria-labelledby')).textContent,
                           document.getElementById('token-input').labels[0].textContent]"#,
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(labels, json!(["This server needs a token", "Token"]));
        press(&browser, &TAB.to_string()).await;
        let button = c
            .execute("return document.activeElement.textContent", vec![])
            .await
            .unwrap();
        assert_eq!(button, json!("Use token"));
        // Escape dismisses it: the page says why it is empty, and a button asks again.
        press(&browser, &ESCAPE.to_string()).await;
        let notice = browser
            .until(
                "the page without a token",
                r#"const n = document.getElementById('no-token');
                   return n && !document.getElementById('token-dialog').open ? [n.getAttribute('role'), n.textContent] : null"#,
            )
            .await;
        assert_eq!(notice[0], json!("alert"), "{notice}");
        assert_eq!(focused(&browser).await, json!("enter-token"));
        press(&browser, &ENTER.to_string()).await;
        let refusal = browser.until("the token dialog again", &asked(false)).await;
        assert_eq!(refusal, json!(""), "still nothing refused");

        // A wrong token, typed and sent with Enter: refused, in words, and asked again.
        type_and_enter(&browser, WRONG).await;
        let refusal = browser
            .until(
                "the refusal",
                &asked(true),
            )
            .await;
        assert!(refusal.as_str().unwrap().contains("refused"), "{refusal}");
        let after = c
            .execute(
                "return [document.getElementById('token-error').getAttribute('role'), document.getElementById('conn').textContent, sessionStorage.getItem('oort-token'), document.querySelectorAll('tr[data-rule]').length]",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            after,
            json!(["alert", "token refused", null, 0]),
            "announced, and the refused token forgotten"
        );
        browser.shot("token-refused.png").await;

        // The right one: the rule, its live rate, and the token kept for this tab only.
        traffic.read(&browser).await;
        let accepted_from = traffic.answers.len();
        type_and_enter(&browser, FIRST).await;
        browser
            .until(
                "the rule's live rate",
                r#"const r = document.querySelector('tr[data-rule="plant-meter"] .rate-in');
                   return r && parseFloat(r.textContent.replace(/,/g, '')) > 0 && !document.getElementById('token-dialog').open
                     ? r.textContent : null"#,
            )
            .await;
        let kept = c
            .execute(
                "return [sessionStorage.getItem('oort-token'), localStorage.length, document.cookie, location.href.includes('token')]",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(kept, json!([FIRST, 0, "", false]), "in sessionStorage only");

        // Moving between the views, by their links, asks nothing again: each shows its data.
        c.find(Locator::Css(r#"tr[data-rule="plant-meter"] a"#))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        browser
            .until(
                "the rule page",
                r#"return document.querySelectorAll('.graph [data-edge]').length === 2
                     && document.querySelector('#rule-status [data-status="running"]') || null"#,
            )
            .await;
        let views = [
            ("#/new", "a checked rule", "#rule-form"),
            ("#/streams", "the stream", r#"#stream-form"#),
            ("#/plugins", "the plugins page", "#plugin-form"),
        ];
        for (link, what, marker) in views {
            c.find(Locator::Css(&format!(r#"nav a[href="{link}"]"#)))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            browser
                .until(what, &format!("return document.querySelector('{marker}') || null"))
                .await;
        }
        c.find(Locator::Css(r##"nav a[href="#/new"]"##))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        // The form: every field labelled, in reading order from the keyboard; the server's
        // verdict is announced and tied to the fields, a refused save as an alert. (The view
        // is drawn on the `hashchange` after the click.)
        let labels = browser
            .until(
                "the new rule's form, its first field focused",
                r#"return document.querySelector('#rule-form') && document.activeElement?.id === 'rule-id'
                     ? [...document.querySelectorAll('#rule-form input, #rule-form textarea')]
                         .map((e) => [e.id, e.labels[0]?.textContent ?? null]) : null"#,
            )
            .await;
        assert_eq!(
            labels,
            json!([["rule-id", "Id"], ["rule-sql", "SQL"], ["rule-actions", "Actions (JSON)"],
                   ["rule-options", "Options (JSON, optional)"]])
        );
        let mut order = Vec::new();
        for _ in 0..4 {
            press(&browser, &TAB.to_string()).await;
            order.push(focused(&browser).await);
        }
        assert_eq!(
            order,
            [json!("rule-sql"), json!("rule-actions"), json!("rule-options"), json!("save-rule")]
        );
        browser.type_into("#rule-id", "plant-meter").await;
        browser
            .type_into("#rule-sql", "SELECT n\nFROM s WHER n > 1")
            .await;
        let bad = browser
            .until(
                "the SQL error, announced and tied to the field",
                r#"const v = document.querySelector('#verdict[data-valid="false"][data-line="2"]');
                   const sql = document.getElementById('rule-sql');
                   return v && [v.getAttribute('role'), !!v.closest('[aria-live]'),
                     sql.getAttribute('aria-invalid'), sql.getAttribute('aria-describedby')] || null"#,
            )
            .await;
        assert_eq!(bad, json!(["status", true, "true", "verdict"]));
        browser.type_into("#rule-sql", "SELECT n FROM s").await;
        browser
            .until(
                "the server's check of the new rule",
                r#"return document.querySelector('#verdict[data-valid="true"]')
                     && document.getElementById('rule-sql').getAttribute('aria-invalid') === 'false' || null"#,
            )
            .await;
        c.find(Locator::Css("#save-rule"))
            .await
            .unwrap()
            .send_keys(&ENTER.to_string())
            .await
            .unwrap();
        let refused = browser
            .until(
                "the refused save",
                r#"const v = document.querySelector('#verdict[data-valid="false"]');
                   return v ? [v.getAttribute('role'), v.textContent] : null"#,
            )
            .await;
        assert_eq!(refused[0], json!("alert"), "{refused}");
        assert!(refused[1].as_str().unwrap().contains("already exists"), "{refused}");
        c.find(Locator::Css(r##"nav a[href="#/streams"]"##))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        browser
            .until(
                "the stream in the list",
                r#"return [...document.querySelectorAll('main li button')].some((b) => b.textContent === 'Edit s') || null"#,
            )
            .await;
        // A reload of the page keeps the tab's token.
        c.refresh().await.unwrap();
        let reloaded = browser
            .until(
                "the streams page after a reload",
                r#"return [...document.querySelectorAll('main li button')].some((b) => b.textContent === 'Edit s')
                     ? [performance.getEntriesByType('navigation')[0].type, document.getElementById('token-dialog').open] : null"#,
            )
            .await;
        assert_eq!(reloaded, json!(["reload", false]));
        c.find(Locator::Css(r##"nav a[href="#/rules"]"##))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        browser
            .until(
                "the list after a reload",
                r#"return document.querySelector('tr[data-rule="plant-meter"] .status')?.textContent.includes('Running') || null"#,
            )
            .await;
        traffic.read(&browser).await;
        assert_eq!(
            traffic.refused_since(accepted_from),
            Vec::<&str>::new(),
            "nothing refused once the token was given"
        );
        assert!(
            traffic.answered("/events/rules", Some(&format!("Bearer {FIRST}")), 200),
            "the list's event stream sends the token in a header: {traffic:?}"
        );

        // A new tab asks again: the token is this tab's.
        let first_tab = c.window().await.unwrap();
        let tab = c.new_window(true).await.unwrap();
        c.switch_to_window(tab.handle).await.unwrap();
        c.goto(&format!("{ui}#/streams")).await.unwrap();
        browser.until("the dialog in a new tab", &asked(false)).await;
        // Dismissed on a page drawn from plain calls: it says why it is empty too.
        press(&browser, &ESCAPE.to_string()).await;
        browser
            .until(
                "the streams page without a token",
                r#"return document.getElementById('no-token') && document.activeElement?.id === 'enter-token' || null"#,
            )
            .await;
        c.close_window().await.unwrap();
        c.switch_to_window(first_tab).await.unwrap();

        // The server restarts with another token file, under the rule's page: the page asks
        // again, saying the token was refused, and comes back with the new one.
        c.goto(&format!("{ui}#/rule/plant-meter")).await.unwrap();
        browser
            .until(
                "the rule page",
                r#"return document.querySelector('#rule-status [data-status="running"]') || null"#,
            )
            .await;
        server.stop();
        let server = Server::start_on(&scratch, port, &options("rotated")).with_token(SECOND);
        let refusal = browser
            .until(
                "the dialog once the token is refused",
                &asked(true),
            )
            .await;
        assert!(refusal.as_str().unwrap().contains("refused"), "{refusal}");
        type_and_enter(&browser, SECOND).await;
        browser
            .until(
                "the rule page with the new token",
                r#"const s = document.querySelector('#rule-status [data-status="running"]');
                   return s && document.getElementById('conn').textContent === 'live updates on'
                     && !document.getElementById('token-dialog').open || null"#,
            )
            .await;
        let bearer = format!("Bearer {SECOND}");
        traffic
            .until(&browser, "the rule's events with the new token", |t| {
                t.answered("/events/rules/plant-meter", Some(&bearer), 200)
            })
            .await;
        // And its counters move again.
        let rows_in = r#"return document.querySelector('tr[data-sink="sink_nop_0"] td:nth-child(2)')?.textContent ?? null"#;
        let before = browser.until("the action's rows in", rows_in).await;
        browser
            .until(
                "the action's rows in to move",
                &format!("const n = (() => {{ {rows_in} }})(); return n !== {before} ? n : null"),
            )
            .await;

        // Never in a URL: every request the browser made, pages, scripts and calls.
        traffic.read(&browser).await;
        assert!(traffic.requests.len() > 10, "{traffic:?}");
        for (_, url, _) in &traffic.requests {
            for token in [FIRST, SECOND, WRONG] {
                assert!(!url.contains(token), "{url} holds a token");
            }
        }
        browser.close().await;

        // A new browser (a fresh profile) asks again.
        let fresh = Browser::start().await.unwrap();
        fresh.client.goto(&format!("{ui}#/rules")).await.unwrap();
        fresh.until("the dialog in a new browser", &asked(false)).await;
        fresh.close().await;
        server
    });
    flow.stop();
    server.stop();
}
