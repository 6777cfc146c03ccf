//! Tests of the template engine: Go parity tables, Oort's deliberate differences from Go,
//! limits against hostile templates, and the public API.

mod go_parity;

use std::sync::Arc;

use super::{MAX_EXEC_DEPTH, MAX_NESTING, MAX_TEMPLATE_DEPTH, Template, TemplateError};
use crate::value::{Map, Value};

/// One row with a value of every kind.
pub(super) const ROW: &str = r#"{"ab": "hello", "n": null, "i": 7, "f": 2.5, "neg": -3, "t": true, "fl": false, "e": "", "s": "a<b>&\"cé\n", "arr": [1, "x", null, {"q": 1.5}], "ea": [], "eo": {}, "m": {"b": 2, "a": 1, "c": {"d": "deep"}}, "nums": [3, 1, 2], "strs": ["b", "a", "c"], "big": 9007199254740993, "f1": 1000000.0, "f2": 1e-05, "f3": 1e+21, "f4": 123456.0, "f5": -0.0, "f6": 1.0, "f7": 1234567.0, "t_av": 36.25}"#;
/// A window result: a list of rows.
pub(super) const ROWS: &str = r#"[{"ab": "hello1"}, {"ab": "hello2"}]"#;
/// The rows of eKuiper's data template guide.
pub(super) const DOC1: &str =
    r#"{"device_id": 1, "t_av": 36.25, "t_count": 4, "t_max": 80, "t_min": 10}"#;
pub(super) const DOC2: &str = r#"{"device_id": "1", "values": [{"temperature": 10.5}, {"temperature": 20.3}, {"temperature": 30.3}]}"#;
/// No data at all.
pub(super) const NULL_DATA: &str = "null";

fn data(json: &str) -> Value {
    crate::json::parse_value(json.as_bytes()).expect("test data is valid JSON")
}

fn render(template: &str, dot: &Value) -> Result<String, TemplateError> {
    Template::parse(template)?.render_to_string(dot)
}

/// Renders every template with the data and compares the exact output.
pub(super) fn check(json: &str, cases: &[(&str, &str)]) {
    let dot = data(json);
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(template, want)| match render(template, &dot) {
            Ok(got) if got == *want => None,
            Ok(got) => Some(format!("{template:?}\n   want {want:?}\n    got {got:?}")),
            Err(e) => Some(format!("{template:?}\n   want {want:?}\n  error {e}")),
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Renders every template with the data and compares the exact error message.
pub(super) fn check_err(json: &str, cases: &[(&str, &str)]) {
    let dot = data(json);
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(template, want)| match render(template, &dot) {
            Err(e) if e.to_string() == *want => None,
            Err(e) => Some(format!(
                "{template:?}\n   want {want:?}\n    got {:?}",
                e.to_string()
            )),
            Ok(out) => Some(format!("{template:?}\n   want {want:?}\n     ok {out:?}")),
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Runs `f` on a thread with a large stack: unoptimised builds use far more stack per level
/// than release builds, and these tests go as deep as the limits allow.
fn with_big_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("test thread");
}

#[test]
fn oort_compares_ints_and_floats_where_go_would_refuse() {
    // eKuiper's JSON numbers are all float64, so its users write `lt .x 30.0`; Oort keeps
    // whole numbers as integers, so mixing them must work.
    check(
        ROW,
        &[
            (
                "{{lt .f 3}} {{gt .i 6.5}} {{eq .i 7.0}} {{le .t_av 30}}",
                "true true true false",
            ),
            (
                "{{eq .arr .arr}} {{eq .m .m}} {{ne .nums .strs}}",
                "true true true",
            ),
            (
                "{{index .nums 1.0}} {{repeat .i \"-\"}} {{substr 0 .f6 \"abc\"}}",
                "1 ------- a",
            ),
            (
                "{{printf \"%.2f|%5.1f|%e\" 3 .i .i}}",
                "3.00|  7.0|7.000000e+00",
            ),
            (
                "{{printf \"%d|%d|%d\" 3.0 .f6 2.5}}",
                "3|1|%!d(float64=2.5)",
            ),
        ],
    );
}

#[test]
fn oort_follows_newer_go_releases() {
    // Go 1.22 ranges over integers and Go 1.23 has `{{else with}}`; eKuiper builds with both.
    check(
        ROW,
        &[
            ("{{range 3}}{{.}}{{end}}", "012"),
            ("{{range $i := .i}}{{$i}}{{end}}", "0123456"),
            ("{{range 0}}x{{else}}none{{end}}", "none"),
            ("{{range .nums}}{{range .}}*{{end}};{{end}}", "***;*;**;"),
            ("{{with .e}}x{{else with .ab}}{{.}}{{end}}", "hello"),
            ("{{with .e}}x{{else with .missing}}y{{else}}z{{end}}", "z"),
        ],
    );
    check_err(
        ROW,
        &[(
            "{{range $i, $e := 3}}{{end}}",
            "1:19: executing at <3>: can't use 3 to iterate over more than one variable",
        )],
    );
}

#[test]
fn json_output_escapes_as_gos_encoding_json() {
    // Go's encoding/json escapes <, > and & as \u003c, \u003e and \u0026.
    check(
        ROW,
        &[
            ("{{toJson .s}}", "\"a\\u003cb\\u003e\\u0026\\\"cé\\n\""),
            ("{{json .m}}", "{\"a\":1,\"b\":2,\"c\":{\"d\":\"deep\"}}"),
            (
                "{{toJson .f3}} {{toJson .f2}} {{toJson .f1}}",
                "1e+21 0.00001 1000000",
            ),
            (
                "{{toPrettyJson (dict \"k\" .s)}}",
                "{\n  \"k\": \"a\\u003cb\\u003e\\u0026\\\"cé\\n\"\n}",
            ),
        ],
    );
}

#[test]
fn oort_extensions_and_type_names() {
    check(
        ROW,
        &[
            // Go's builtin slice works on strings; eKuiper's sprig `slice` does not.
            (
                "{{slice \"hello\" 1 3}} {{slice \"hello\" 2}} {{slice .ab 0 1}}",
                "el llo h",
            ),
            // Every integer is an int64 here; Go calls literal integers `int`.
            (
                "{{printf \"%s\" 5}} {{typeOf 1}} {{printf \"%d\" 1 2}}",
                "%!s(int64=5) int64 1%!(EXTRA int64=2)",
            ),
        ],
    );
}

#[test]
fn byte_values_print_like_go_byte_slices() {
    let mut map = Map::new();
    map.insert(Arc::from("b"), Value::Bytes(Arc::from(&b"hi"[..])));
    let dot = Value::object(map);
    let cases = [
        ("{{.b}}", "[104 105]"),
        ("{{printf \"%s|%x|%v\" .b .b .b}}", "hi|6869|[104 105]"),
        ("{{toJson .b}}", "\"aGk=\""),
        ("{{len .b}} {{index .b 1}}", "2 105"),
        (
            "{{range $i, $c := .b}}{{$i}}:{{$c}} {{end}}",
            "0:104 1:105 ",
        ),
    ];
    for (template, want) in cases {
        assert_eq!(render(template, &dot).unwrap(), want, "{template}");
    }
}

#[test]
fn functions_outside_the_supported_set_fail_at_parse_time() {
    for name in [
        "now",
        "date",
        "sha256sum",
        "regexMatch",
        "env",
        "uuidv4",
        "prop",
        "call",
        "merge",
    ] {
        let err = Template::parse(&format!("x{{{{{name} 1}}}}")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("1:4: function \"{name}\" not defined")
        );
    }
}

#[test]
fn every_function_is_known_to_the_parser_once() {
    let names: Vec<&str> = super::function_names().collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "duplicate function names");
    for name in names {
        let t = format!("{{{{if false}}}}{{{{{name}}}}}{{{{end}}}}");
        assert!(Template::parse(&t).is_ok(), "{name}");
    }
}

#[test]
fn parse_nesting_is_capped() {
    let ok = "{{if 1}}".repeat(MAX_NESTING) + &"{{end}}".repeat(MAX_NESTING);
    assert!(Template::parse(&ok).is_ok());
    let deep = "{{if 1}}".repeat(MAX_NESTING + 1) + &"{{end}}".repeat(MAX_NESTING + 1);
    let err = Template::parse(&deep).unwrap_err().to_string();
    assert!(
        err.ends_with("template nested deeper than 100 levels"),
        "{err}"
    );
    let parens = format!("{{{{{}1{}}}}}", "(".repeat(500), ")".repeat(500));
    let err = Template::parse(&parens).unwrap_err().to_string();
    assert!(
        err.ends_with("template nested deeper than 100 levels"),
        "{err}"
    );
    // Unbalanced input of any size fails without recursing on it.
    let err = Template::parse(&"{{if 1}}".repeat(100_000))
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("template nested deeper than 100 levels"),
        "{err}"
    );
}

#[test]
fn template_recursion_is_capped() {
    with_big_stack(|| {
        let t = Template::parse(r#"{{define "r"}}x{{template "r" .}}{{end}}{{template "r" .}}"#)
            .unwrap();
        let err = t.render_to_string(&Value::Null).unwrap_err().to_string();
        let want = format!(
            "1:16: executing at <{{{{template \"r\" .}}}}>: exceeded maximum template depth ({MAX_TEMPLATE_DEPTH})"
        );
        assert_eq!(err, want);
        // Recursion that ends is fine.
        let t = Template::parse(
            r#"{{define "r"}}{{if .}}{{index . 0}}{{template "r" (rest .)}}{{end}}{{end}}{{template "r" (until 90)}}"#,
        )
        .unwrap();
        assert_eq!(t.render_to_string(&Value::Null).unwrap().len(), 170);
    });
}

#[test]
fn execution_depth_is_capped() {
    with_big_stack(|| {
        // Each level of the template nests 99 ranges, so the depth cap trips long before the
        // template-call cap.
        let body = "{{range list 1}}".repeat(99) + "{{template \"r\" .}}" + &"{{end}}".repeat(99);
        let text = format!("{{{{define \"r\"}}}}{body}{{{{end}}}}{{{{template \"r\" .}}}}");
        let err = render(&text, &Value::Null).unwrap_err().to_string();
        assert!(
            err.ends_with(&format!(
                "exceeded maximum nesting depth ({MAX_EXEC_DEPTH})"
            )),
            "{err}"
        );
    });
}

#[test]
fn runaway_builders_are_refused() {
    check_err(
        ROW,
        &[
            (
                "{{repeat 100000000 \"ab\"}}",
                "1:3: executing at <repeat 100000000 \"ab\">: error calling repeat: result too large (200000000 items or bytes)",
            ),
            (
                "{{range 100000000}}{{end}}",
                "1:9: executing at <100000000>: range over 100000000 is too long",
            ),
            (
                "{{until 100000000}}",
                "1:3: executing at <until 100000000>: error calling until: result too large (100000000 items or bytes)",
            ),
        ],
    );
}

#[test]
fn render_appends_and_leaves_output_alone_on_error() {
    let t = Template::parse("[{{.ab}}]").unwrap();
    let mut out = b"prefix:".to_vec();
    t.render(&data(ROW), &mut out).unwrap();
    assert_eq!(out, b"prefix:[hello]");

    let t = Template::parse("partial {{.ab}} {{index .arr 9}}").unwrap();
    let mut out = b"keep".to_vec();
    let err = t.render(&data(ROW), &mut out).unwrap_err();
    assert_eq!(out, b"keep");
    match err {
        TemplateError::Exec {
            line,
            col,
            action,
            msg,
        } => {
            assert_eq!((line, col), (1, 19));
            assert_eq!(action, "index .arr 9");
            assert_eq!(msg, "error calling index: index out of range: 9");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn parse_errors_carry_line_and_column() {
    let err = Template::parse("line one\nline {{two}}\n").unwrap_err();
    match err {
        TemplateError::Parse { line, col, msg } => {
            assert_eq!((line, col), (2, 8));
            assert_eq!(msg, "function \"two\" not defined");
        }
        other => panic!("{other:?}"),
    }
    let err = Template::parse("é {{ .a }").unwrap_err();
    assert_eq!(err.to_string(), "1:9: unexpected \"}\" in operand");
}

#[test]
fn templates_are_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Template>();
    let t = Arc::new(Template::parse("{{range .}}{{.ab}};{{end}}").unwrap());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let t = Arc::clone(&t);
            std::thread::spawn(move || t.render_to_string(&data(ROWS)).unwrap())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), "hello1;hello2;");
    }
    assert_eq!(t.source(), "{{range .}}{{.ab}};{{end}}");
}

#[test]
fn printf_precisions_beyond_the_formatter_are_cut() {
    let dot = data(ROW);
    // Precisions of 65536 and more once panicked in Rust's float formatting.
    let fixed = render(r#"{{printf "%.99999999f" 0.5}}"#, &dot).unwrap();
    assert_eq!(fixed.len(), 2 + 65534);
    assert!(fixed.starts_with("0.5000"));
    let exp = render(r#"{{printf "%.65536e" 1.0}}"#, &dot).unwrap();
    assert_eq!(exp.len(), 2 + 65534 + 4);
    assert!(exp.ends_with("0e+00"));
    for template in [
        r#"{{printf "%.*g" 100000 0.1}}"#,
        r#"{{printf "%.18446744073709551616G" 1e-7}}"#,
        r#"{{printf "%.70000x" 2.5}}"#,
    ] {
        assert!(render(template, &dot).is_ok(), "{template}");
    }
}

/// The error message of rendering `template` over `ROW`.
fn render_err(template: &str) -> String {
    render(template, &data(ROW)).unwrap_err().to_string()
}

#[test]
fn runaway_recursion_and_growth_are_refused() {
    with_big_stack(|| {
        // Two calls a level, forty levels: 2^40 calls.
        let err = render_err(
            r#"{{define "r"}}{{if lt (len .) 40}}{{template "r" (print . "x")}}{{template "r" (print . "y")}}{{end}}{{end}}{{template "r" ""}}"#,
        );
        assert!(
            err.contains("exceeded the work limit (33554432 steps)"),
            "{err}"
        );
        // Each level quotes the last one's text: its backslashes double.
        let err = render_err(
            r#"{{define "r"}}x{{template "r" mustToRawJson .}}{{end}}{{template "r" .}}"#,
        );
        assert!(
            err.contains("error calling mustToRawJson: result too large"),
            "{err}"
        );
    });
    // A list holding the last one twice, 100 times over: 2^100 items, in little memory.
    let err = render_err(r#"{{$x := list 1}}{{range 100}}{{$x = list $x $x}}{{end}}{{toJson $x}}"#);
    assert!(
        err.contains("error calling list: result too large"),
        "{err}"
    );
    let err = render_err(r#"{{$b := repeat 1000 "ab"}}{{replace "a" $b (repeat 10000 "a")}}"#);
    assert!(
        err.contains("error calling replace: result too large (20000000 items or bytes)"),
        "{err}"
    );
    let err = render_err(r#"{{$b := repeat 16000000 "a"}}{{range 10}}{{$b}}{{end}}"#);
    assert!(
        err.contains("output too large (more than 67108864 bytes)"),
        "{err}"
    );
}
