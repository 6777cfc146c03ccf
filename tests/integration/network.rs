//! The network sinks against real servers on loopback: `rest` against an HTTP server the test
//! starts (2xx, 5xx, 4xx, down), `redis` against Debian's `redis-server`; and the host's
//! `wasi:http` gate refusing a URL outside the grant.

use serde_json::{Value, json};

use crate::common::{Run, Scratch, numbered};
use oort_tests::http::{DROP, HttpServer};
use oort_tests::redis::{RedisServer, Reply};

const STREAMS: &str = "CREATE STREAM demo () WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\");\n";

/// A rule reading `rows` into one action.
fn case(rows: &str, action: Value) -> Scratch {
    let scratch = Scratch::new();
    scratch.write("streams.sql", STREAMS);
    scratch.write("in.jsonl", rows);
    let rule = json!({"id": "r", "sql": "SELECT * FROM demo", "actions": [action]});
    scratch.write("rule.json", &rule.to_string());
    scratch
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

fn balanced(run: &Run) {
    assert_eq!(run.action(0)["balanced"], true, "{}", run.action(0));
}

#[test]
fn rest_sends_each_row_with_the_method_headers_and_body_asked() {
    let server = HttpServer::start();
    let scratch = case(
        &numbered(3),
        json!({"rest": {"url": server.url("/api/v1?src=oort"), "method": "put",
                        "headers": {"X-Token": "abc"}}}),
    );
    let run = scratch.run_rule(&[]);
    run.assert_ok();
    let requests = server.requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    for (i, request) in requests.iter().enumerate() {
        assert_eq!(request.method, "PUT");
        assert_eq!(request.path, "/api/v1?src=oort");
        assert_eq!(request.header("x-token"), Some("abc"));
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.body, format!("{{\"n\":{i}}}"));
    }
    assert_eq!(run.action(0)["records_out_total"], 3);
}

#[test]
fn rest_debug_resp_logs_each_answer_at_info() {
    let server = HttpServer::start();
    let action = |debug: bool| json!({"rest": {"url": server.url("/in"), "method": "post", "debugResp": debug}});
    let run = case(&numbered(2), action(true)).run_rule(&["--log", "info"]);
    run.assert_ok();
    let answered = format!("{} answered 200", server.url("/in"));
    assert_eq!(run.stderr.matches(&answered).count(), 2, "{}", run.stderr);
    let run = case(&numbered(2), action(false)).run_rule(&["--log", "info"]);
    run.assert_ok();
    assert!(!run.stderr.contains(&answered), "{}", run.stderr);
}

#[test]
fn rest_defaults_follow_ekuiper_get_without_a_body() {
    let server = HttpServer::start();
    let scratch = case(
        &numbered(1),
        json!({"rest": {"url": server.url("/poll"), "insecureSkipVerify": true}}),
    );
    scratch.run_rule(&[]).assert_ok();
    let request = &server.requests()[0];
    assert_eq!(request.method, "GET");
    assert_eq!(request.body, "");
    assert_eq!(request.header("content-type"), None);

    // Skipping certificate checks means nothing for http, and is refused for https.
    let scratch = case(
        &numbered(1),
        json!({"rest": {"url": "https://example.com/", "insecureSkipVerify": true}}),
    );
    let run = scratch.run_rule(&[]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("insecureSkipVerify"), "{}", run.stderr);
}

#[test]
fn rest_form_bodies_are_urlencoded() {
    let server = HttpServer::start();
    let scratch = case(
        "{\"a\":\"x y\",\"b\":2}\n",
        json!({"rest": {"url": server.url("/form"), "method": "post", "bodyType": "form"}}),
    );
    scratch.run_rule(&[]).assert_ok();
    let request = &server.requests()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.body, "a=x+y&b=2");
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
}

#[test]
fn rest_5xx_answers_are_retried_until_the_server_recovers() {
    let server = HttpServer::start();
    server.script(&[503, 500]);
    let scratch = case(
        &numbered(3),
        json!({"rest": {"url": server.url("/"), "method": "post", "retryCount": 5, "retryInterval": 10,
                        "batchSize": 3}}),
    );
    let run = scratch.run_rule(&[]);
    run.assert_ok();
    let action = run.action(0);
    assert_eq!(action["records_out_total"], 3, "{action}");
    assert_eq!(action["retries_total"], 2, "{action}");
    assert_eq!(action["failed_total"], 0, "{action}");
    // The retried batch resumes where it stopped: each row reached the server once with 2xx.
    assert_eq!(server.delivered(), lines(&numbered(3)));
    balanced(&run);
}

#[test]
fn rest_a_connection_dropped_before_the_answer_is_retried() {
    let server = HttpServer::start();
    server.script(&[DROP, DROP]);
    let scratch = case(
        &numbered(3),
        json!({"rest": {"url": server.url("/"), "method": "post", "retryCount": 5,
                        "retryInterval": 10, "batchSize": 3, "deadLetter": "dead.jsonl"}}),
    );
    let run = scratch.run_rule(&[]);
    run.assert_ok();
    let action = run.action(0);
    assert_eq!(action["retries_total"], 2, "{action}");
    assert_eq!(action["dead_letter_total"], 0, "{action}");
    assert_eq!(action["failed_total"], 0, "{action}");
    let requests = server.requests();
    assert_eq!(
        requests.len(),
        5,
        "two dropped, then three answered: {requests:?}"
    );
    assert_eq!(requests[0].status, DROP);
    assert_eq!(requests[1].status, DROP);
    assert_eq!(server.delivered(), lines(&numbered(3)));
    balanced(&run);
}

/// More requests from one instance, in one batch, with a `timeout`, than its resource table
/// has `wasi:http` handles (1,024): nothing a request leaves behind fills the table (a full
/// table traps the instance, and a batch that traps it three times is given up). The call's
/// own deadline is lifted: this is about handles, not about how fast a loaded machine sends.
#[test]
fn rest_sends_thousands_of_requests_from_one_instance() {
    const ROWS: usize = 1500;
    let server = HttpServer::start();
    let scratch = case(
        &numbered(ROWS),
        json!({"rest": {"url": server.url("/"), "method": "post", "timeout": "5s",
                        "batchSize": ROWS, "callTimeout": "300s"}}),
    );
    let run = scratch.run_rule(&[]);
    run.assert_ok();
    assert!(!run.stderr.contains("trapped"), "{}", run.stderr);
    let action = run.action(0);
    assert_eq!(action["records_out_total"], ROWS, "{action}");
    assert_eq!(action["failed_total"], 0, "{action}");
    assert_eq!(server.delivered(), lines(&numbered(ROWS)));
    balanced(&run);
}

#[test]
fn rest_a_content_type_header_replaces_the_body_types() {
    let server = HttpServer::start();
    let scratch = case(
        &numbered(1),
        json!({"rest": {"url": server.url("/"), "method": "post",
                        "headers": {"Content-Type": "application/vnd.api+json"}}}),
    );
    scratch.run_rule(&[]).assert_ok();
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let types: Vec<&str> = requests[0]
        .headers
        .iter()
        .filter(|(name, _)| name == "content-type")
        .map(|(_, value)| value.as_str())
        .collect();
    assert_eq!(types, ["application/vnd.api+json"]);
    assert_eq!(requests[0].body, "{\"n\":0}");
}

#[test]
fn rest_a_server_that_never_answers_times_out_as_transient() {
    // Connections complete in the listener's backlog, but nothing ever answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", silent.local_addr().unwrap());
    let scratch = case(
        &numbered(1),
        json!({"rest": {"url": url, "method": "post", "timeout": "300ms", "retryCount": 1,
                        "retryInterval": 10, "deadLetter": "dead.jsonl"}}),
    );
    let started = std::time::Instant::now();
    let run = scratch.run_rule(&[]);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "the timeout applies: {:?}",
        started.elapsed()
    );
    let action = run.action(0);
    assert_eq!(action["retries_total"], 1, "a timeout is retried: {action}");
    let letter: Value = serde_json::from_str(scratch.read("dead.jsonl").trim()).unwrap();
    assert_eq!(letter["reason"], "transient", "{letter}");
    assert!(
        letter["error"].as_str().unwrap().contains("Timeout"),
        "{letter}"
    );
    balanced(&run);
}

#[test]
fn rest_response_type_body_needs_a_2xx_code_in_the_answer() {
    // The test server's answers are plain text (`status 200`): with `responseType: body` a 200
    // whose body holds no 2xx `code` is refused, as eKuiper does.
    let server = HttpServer::start();
    let scratch = case(
        &numbered(1),
        json!({"rest": {"url": server.url("/"), "method": "post", "responseType": "body",
                        "deadLetter": "dead.jsonl"}}),
    );
    let run = scratch.run_rule(&[]);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert_eq!(server.requests().len(), 1);
    let letter: Value = serde_json::from_str(scratch.read("dead.jsonl").trim()).unwrap();
    assert_eq!(letter["reason"], "rejected", "{letter}");
    assert!(
        letter["error"].as_str().unwrap().contains("not JSON"),
        "{letter}"
    );

    let bad = case(
        &numbered(1),
        json!({"rest": {"url": server.url("/"), "responseType": "json"}}),
    );
    let run = bad.run_rule(&[]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("`responseType`"), "{}", run.stderr);
    assert_eq!(
        server.requests().len(),
        1,
        "a rule that cannot start sends nothing"
    );
}

#[test]
fn rest_4xx_answers_are_rejected_to_the_dead_letter_file() {
    let server = HttpServer::start();
    server.script(&[422]);
    let scratch = case(
        &numbered(3),
        json!({"rest": {"url": server.url("/"), "method": "post", "batchSize": 1,
                        "deadLetter": "dead.jsonl"}}),
    );
    let run = scratch.run_rule(&[]);
    assert_eq!(run.code, Some(3));
    let action = run.action(0);
    assert_eq!(action["dead_letter_total"], 1, "{action}");
    assert_eq!(action["records_out_total"], 2, "{action}");
    assert_eq!(
        action["retries_total"], 0,
        "a rejection is not retried: {action}"
    );
    let letter: Value = serde_json::from_str(scratch.read("dead.jsonl").trim()).unwrap();
    assert_eq!(letter["payload"], json!({"n": 0}));
    assert!(
        letter["error"].as_str().unwrap().contains("answered 422"),
        "{letter}"
    );
    assert_eq!(server.delivered(), lines("{\"n\":1}\n{\"n\":2}\n"));
    balanced(&run);
}

#[test]
fn rest_to_a_server_that_is_down_is_cached_not_lost() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let scratch = case(
        &numbered(3),
        json!({"rest": {"url": format!("http://127.0.0.1:{port}/"), "method": "post", "retryCount": 1,
                        "retryInterval": 10, "enableCache": true, "timeout": 1000}}),
    );
    // The server stays down: 0 leaves the rows cached at once, without waiting for it.
    let run = scratch.run_rule(&["--drain-timeout", "0"]);
    assert_eq!(run.code, Some(3));
    let action = run.action(0);
    assert_eq!(action["cached"], 3, "{action}");
    assert_eq!(action["failed_total"], 0, "{action}");
    let error = action["last_exception"].as_str().unwrap_or_default();
    assert!(error.contains("ConnectionRefused"), "{error}");
    balanced(&run);

    // The server is up now: the next run delivers what the cache kept.
    let server = HttpServer::start();
    let rule = json!({"id": "r", "sql": "SELECT * FROM demo", "actions": [{"rest": {
        "url": server.url("/"), "method": "post", "enableCache": true}}]});
    scratch.write("rule.json", &rule.to_string());
    scratch.write("in.jsonl", "");
    let run = scratch.run_rule(&[]);
    // The cache belongs to the action, wherever its sink points now.
    run.assert_ok();
    assert_eq!(run.action(0)["cache_restored_total"], 3);
    assert_eq!(server.delivered(), lines(&numbered(3)));
}

#[test]
fn a_url_outside_the_http_grant_is_denied_by_the_host() {
    let granted = HttpServer::start();
    let other = HttpServer::start();
    let scratch = case(
        &numbered(1),
        json!({"probe": {"journal": "out/journal.txt",
                         "fetch": [granted.url("/ok"), other.url("/steal")],
                         "grants": {"http": [granted.url("/")]}}}),
    );
    let run = scratch.run_rule(&["--log", "warn"]);
    run.assert_ok();
    let journal = scratch.read("out/journal.txt");
    assert!(
        journal.contains(&format!("fetch {} status 200", granted.url("/ok"))),
        "{journal}"
    );
    assert!(
        journal.contains(&format!(
            "fetch {} refused (ErrorCode::HttpRequestDenied)",
            other.url("/steal")
        )),
        "{journal}"
    );
    assert!(
        other.requests().is_empty(),
        "nothing reached the other server"
    );
    assert!(
        run.stderr.contains("denied: not granted"),
        "the denial is logged: {}",
        run.stderr
    );
}

#[test]
fn a_guest_passing_request_options_with_every_request_does_not_fill_its_table() {
    // Each fetch hands the host a `request-options` (a connect timeout). The host used to keep
    // every one in the instance's resource table (at most 1,024 `wasi:http` handles), so the
    // guest trapped after about a thousand requests. The call's own deadline is lifted: this
    // is about handles, not about how fast a loaded machine sends.
    let server = HttpServer::start();
    let scratch = case(
        &numbered(1),
        json!({"probe": {"journal": "out/journal.txt",
                         "fetch": [server.url("/ok")], "fetchTimes": 1500,
                         "callTimeout": "300s",
                         "grants": {"http": [server.url("/")]}}}),
    );
    let run = scratch.run_rule(&[]);
    run.assert_ok();
    let journal = scratch.read("out/journal.txt");
    assert!(
        journal.contains(&format!("fetch {} status 200 x1500", server.url("/ok"))),
        "{journal}"
    );
    assert_eq!(run.action(0)["restarts_total"], 0, "{}", run.action(0));
    assert_eq!(server.requests().len(), 1500);
}

fn rows() -> &'static str {
    "{\"id\":\"a\",\"v\":1}\n{\"id\":\"b\",\"v\":2}\n{\"id\":\"c\",\"v\":3}\n"
}

#[test]
fn redis_strings_under_field_keys_with_an_expiration() {
    let Some(redis) = RedisServer::start(None) else {
        return;
    };
    let scratch = case(
        rows(),
        json!({"redis": {"addr": redis.addr(), "field": "id", "expiration": 300}}),
    );
    let run = scratch.run_rule(&[]);
    run.assert_ok();
    for (key, v) in [("a", 1), ("b", 2), ("c", 3)] {
        let held = redis.command(&["GET", key]).unwrap();
        let held: Value = serde_json::from_str(held.text().unwrap()).unwrap();
        assert_eq!(held, json!({"id": key, "v": v}));
        let ttl: i64 = redis
            .command(&["TTL", key])
            .unwrap()
            .text()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=300).contains(&ttl), "TTL {ttl}");
    }
    balanced(&run);
}

#[test]
fn redis_keys_from_a_template_evaluated_per_message() {
    let Some(redis) = RedisServer::start(None) else {
        return;
    };
    let scratch = case(
        rows(),
        json!({"redis": {"addr": redis.addr(), "key": "dev:{{.id}}", "batchSize": 3}}),
    );
    let run = scratch.run_rule(&[]);
    run.assert_ok();
    for (key, v) in [("dev:a", 1), ("dev:b", 2), ("dev:c", 3)] {
        let held = redis.command(&["GET", key]).unwrap();
        let held: Value = serde_json::from_str(held.text().unwrap()).unwrap();
        assert_eq!(held["v"], v, "{key}");
    }
    // Nothing went to the literal key.
    assert!(
        redis
            .command(&["GET", "dev:{{.id}}"])
            .unwrap()
            .text()
            .is_none()
    );
    balanced(&run);
}

#[test]
fn redis_lists_in_a_database_behind_a_password() {
    let Some(redis) = RedisServer::start(Some("s3cret")) else {
        return;
    };
    let scratch = case(
        rows(),
        json!({"redis": {"addr": redis.addr(), "password": "s3cret", "db": 2,
                         "key": "events", "dataType": "list"}}),
    );
    scratch.run_rule(&[]).assert_ok();
    let Reply::Array(items) = redis
        .command_in(2, &["LRANGE", "events", "0", "-1"])
        .unwrap()
    else {
        panic!("a list")
    };
    let ids: Vec<Value> = items
        .iter()
        .map(|i| serde_json::from_str::<Value>(i.text().unwrap()).unwrap()["id"].clone())
        .collect();
    assert_eq!(
        ids,
        [json!("c"), json!("b"), json!("a")],
        "LPUSH puts the newest first"
    );
    assert_eq!(
        redis.command(&["EXISTS", "events"]).unwrap(),
        Reply::Text("0".into()),
        "database 0 is untouched"
    );

    // A wrong password is refused for good: the rule does not start.
    let scratch = case(
        rows(),
        json!({"redis": {"addr": redis.addr(), "password": "wrong", "key": "k"}}),
    );
    let run = scratch.run_rule(&[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("redis refused the setup"),
        "{}",
        run.stderr
    );
}

#[test]
fn redis_rowkind_deletes_and_an_acl_user_with_a_duration_expiration() {
    let Some(redis) = RedisServer::start(None) else {
        return;
    };
    let user = redis
        .command(&["ACL", "SETUSER", "writer", "on", ">pw1", "~*", "+@all"])
        .unwrap();
    assert_eq!(user, Reply::Text("OK".into()));
    redis.command(&["SET", "c", "old"]).unwrap();
    let scratch = case(
        "{\"id\":\"a\",\"op\":\"insert\"}\n{\"id\":\"b\",\"op\":\"upsert\"}\n\
         {\"id\":\"a\",\"op\":\"delete\"}\n{\"id\":\"c\",\"op\":\"delete\"}\n",
        json!({"redis": {"addr": redis.addr(), "username": "writer", "password": "pw1",
                         "field": "id", "rowkindField": "op", "expiration": "10s",
                         "batchSize": 1}}),
    );
    let run = scratch.run_rule(&[]);
    run.assert_ok();
    assert_eq!(
        redis.command(&["EXISTS", "a"]).unwrap(),
        Reply::Text("0".into())
    );
    assert_eq!(
        redis.command(&["EXISTS", "c"]).unwrap(),
        Reply::Text("0".into())
    );
    let held = redis.command(&["GET", "b"]).unwrap();
    let held: Value = serde_json::from_str(held.text().unwrap()).unwrap();
    assert_eq!(held, json!({"id": "b", "op": "upsert"}));
    let pttl: i64 = redis
        .command(&["PTTL", "b"])
        .unwrap()
        .text()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10_000).contains(&pttl), "PTTL {pttl}");
    balanced(&run);

    // The default user's password does not open the ACL user's door.
    let scratch = case(
        rows(),
        json!({"redis": {"addr": redis.addr(), "username": "writer", "password": "nope",
                         "key": "k"}}),
    );
    let run = scratch.run_rule(&[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("WRONGPASS"), "{}", run.stderr);
}

#[test]
fn redis_key_type_multiple_and_a_list_that_expires() {
    let Some(redis) = RedisServer::start(None) else {
        return;
    };
    let scratch = case(
        "{\"temperature\":40.9,\"humidity\":\"high\"}\n",
        json!({"redis": {"addr": redis.addr(), "keyType": "multiple"}}),
    );
    scratch.run_rule(&[]).assert_ok();
    assert_eq!(
        redis.command(&["GET", "temperature"]).unwrap(),
        Reply::Text("40.9".into())
    );
    assert_eq!(
        redis.command(&["GET", "humidity"]).unwrap(),
        Reply::Text("high".into())
    );

    let scratch = case(
        rows(),
        json!({"redis": {"addr": redis.addr(), "key": "events", "dataType": "list",
                         "expiration": 60}}),
    );
    scratch.run_rule(&[]).assert_ok();
    assert_eq!(
        redis.command(&["LLEN", "events"]).unwrap(),
        Reply::Text("3".into())
    );
    let ttl: i64 = redis
        .command(&["TTL", "events"])
        .unwrap()
        .text()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&ttl), "TTL {ttl}");
}

#[test]
fn redis_refusing_a_write_dead_letters_it() {
    let Some(redis) = RedisServer::start(None) else {
        return;
    };
    redis.command(&["SET", "events", "not a list"]).unwrap();
    let scratch = case(
        rows(),
        json!({"redis": {"addr": redis.addr(), "key": "events", "dataType": "list",
                         "deadLetter": "dead.jsonl"}}),
    );
    let run = scratch.run_rule(&[]);
    assert_eq!(run.code, Some(3));
    let action = run.action(0);
    assert_eq!(action["dead_letter_total"], 3, "{action}");
    assert!(
        action["last_exception"]
            .as_str()
            .unwrap()
            .contains("WRONGTYPE"),
        "{action}"
    );
    assert_eq!(scratch.read("dead.jsonl").lines().count(), 3);
    balanced(&run);
}

#[test]
fn redis_out_of_memory_is_retried_until_it_has_room() {
    let Some(redis) = RedisServer::start(None) else {
        return;
    };
    // Every write is refused with `-OOM` until the limit is lifted.
    redis.command(&["CONFIG", "SET", "maxmemory", "1"]).unwrap();
    assert!(matches!(
        redis.command(&["SET", "probe", "x"]).unwrap(),
        Reply::Error(e) if e.starts_with("OOM")
    ));
    let scratch = case(
        rows(),
        json!({"redis": {"addr": redis.addr(), "field": "id", "retryCount": 8,
                         "retryInterval": 50, "deadLetter": "dead.jsonl"}}),
    );
    let run = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(400));
            let lifted = redis.command(&["CONFIG", "SET", "maxmemory", "0"]).unwrap();
            assert_eq!(lifted, Reply::Text("OK".into()));
        });
        scratch.run_rule(&[])
    });
    run.assert_ok();
    let action = run.action(0);
    assert!(
        action["retries_total"].as_u64().unwrap() >= 1,
        "the OOM was met and retried: {action}"
    );
    assert_eq!(action["dead_letter_total"], 0, "{action}");
    for key in ["a", "b", "c"] {
        assert!(
            matches!(redis.command(&["GET", key]).unwrap(), Reply::Text(_)),
            "{key} written"
        );
    }
    balanced(&run);
}

#[test]
fn redis_down_then_up_loses_nothing_with_the_cache() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    if oort_tests::redis::redis_server().is_none() {
        // Says SKIPPED (or fails under CI).
        let _ = RedisServer::start(None);
        return;
    }
    let action = json!({"redis": {"addr": format!("127.0.0.1:{port}"), "field": "id",
                                  "enableCache": true, "retryCount": 1, "retryInterval": 10}});
    let scratch = case(rows(), action);
    let run = scratch.run_rule(&[]);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    let summary = run.action(0);
    assert_eq!(summary["cached"], 3, "{summary}");
    assert!(
        summary["last_exception"]
            .as_str()
            .unwrap()
            .contains("cannot connect to redis"),
        "{summary}"
    );

    let redis = RedisServer::start_on(port, None).expect("redis-server");
    scratch.write("in.jsonl", "");
    let run = scratch.run_rule(&[]);
    run.assert_ok();
    assert_eq!(run.action(0)["cache_restored_total"], 3);
    for key in ["a", "b", "c"] {
        assert!(matches!(
            redis.command(&["GET", key]).unwrap(),
            Reply::Text(_)
        ));
    }
}

#[test]
fn rest_url_method_and_headers_are_dynamic_per_message() {
    let server = HttpServer::start();
    let rows =
        "{\"n\":0,\"device\":\"a\",\"m\":\"put\"}\n{\"n\":1,\"device\":\"b\",\"m\":\"post\"}\n";
    let scratch = case(
        rows,
        json!({"rest": {"url": server.url("/dev/{{.device}}?n={{.n}}"), "method": "{{.m}}",
                        "headers": {"X-Device": "dev-{{.device}}", "X-Fixed": "1"}}}),
    );
    let run = scratch.run_rule(&[]);
    run.assert_ok();
    let requests = server.requests();
    let seen: Vec<(&str, &str, Option<&str>, Option<&str>)> = requests
        .iter()
        .map(|r| {
            (
                r.method.as_str(),
                r.path.as_str(),
                r.header("x-device"),
                r.header("x-fixed"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("PUT", "/dev/a?n=0", Some("dev-a"), Some("1")),
            ("POST", "/dev/b?n=1", Some("dev-b"), Some("1")),
        ]
    );
    balanced(&run);
}

#[test]
fn rest_headers_as_one_template_string_render_to_a_json_object_per_message() {
    let server = HttpServer::start();
    // The third row's device holds a quote, so its headers render to text that is not JSON:
    // its batch (one message each here) is dead-lettered, naming the prop.
    let rows = r#"{"n":0,"device":"a"}
{"n":1,"device":"b"}
{"n":2,"device":"q\"q"}
"#;
    let scratch = case(
        rows,
        json!({"rest": {"url": server.url("/in"), "method": "post", "batchSize": 1,
                        "headers": "{\"X-Dev\": \"{{.device}}\", \"X-Fixed\": \"1\"}",
                        "deadLetter": "dead.jsonl"}}),
    );
    let run = scratch.run_rule(&[]);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    let requests = server.requests();
    let seen: Vec<(Option<&str>, Option<&str>)> = requests
        .iter()
        .map(|r| (r.header("x-dev"), r.header("x-fixed")))
        .collect();
    assert_eq!(seen, [(Some("a"), Some("1")), (Some("b"), Some("1"))]);
    let action = run.action(0);
    assert_eq!(action["records_out_total"], 2, "{action}");
    assert_eq!(action["dead_letter_total"], 1, "{action}");
    let letter: Value = serde_json::from_str(scratch.read("dead.jsonl").trim()).unwrap();
    assert_eq!(letter["payload"]["n"], 2, "{letter}");
    assert!(
        letter["error"].as_str().unwrap().contains("`headers`"),
        "{letter}"
    );
    balanced(&run);

    // A string without a template is read once, at start; one that is not a JSON object of
    // strings is refused there, naming the prop.
    let fixed = case(
        &numbered(1),
        json!({"rest": {"url": server.url("/fixed"), "headers": "{\"X-Token\": \"abc\"}"}}),
    );
    fixed.run_rule(&[]).assert_ok();
    let last = server.requests().pop().unwrap();
    assert_eq!(
        (last.path.as_str(), last.header("x-token")),
        ("/fixed", Some("abc"))
    );
    let bad = case(
        &numbered(1),
        json!({"rest": {"url": server.url("/bad"), "headers": "X-Token: abc"}}),
    );
    let run = bad.run_rule(&[]);
    assert_ne!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("`headers`"), "{}", run.stderr);
}

#[test]
fn rest_a_dynamic_url_outside_the_grant_dead_letters_that_message_only() {
    let server = HttpServer::start();
    let outside = "http://127.0.0.1:9/steal";
    let rows = format!(
        "{{\"n\":0,\"to\":\"{}\"}}\n{{\"n\":1,\"to\":\"{outside}\"}}\n{{\"n\":2,\"to\":\"{}\"}}\n",
        server.url("/in"),
        server.url("/in")
    );
    let scratch = case(
        &rows,
        json!({"rest": {"url": "{{.to}}", "method": "post", "batchSize": 3,
                        "grants": {"http": [server.url("/")]},
                        "deadLetter": "dead.jsonl"}}),
    );
    let run = scratch.run_rule(&[]);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    let action = run.action(0);
    assert_eq!(action["dead_letter_total"], 1, "{action}");
    assert_eq!(action["records_out_total"], 2, "{action}");
    let letter: Value = serde_json::from_str(scratch.read("dead.jsonl").trim()).unwrap();
    assert_eq!(letter["payload"]["n"], 1, "{letter}");
    let error = letter["error"].as_str().unwrap();
    assert!(
        error.contains("prop `url`") && error.contains(outside) && error.contains("outside"),
        "{letter}"
    );
    assert_eq!(server.requests().len(), 2);
    balanced(&run);
}
