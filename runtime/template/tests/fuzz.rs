//! A time-budgeted fuzzer for the `dataTemplate` engine: no template text a rule can hold may
//! panic or hang, when it is parsed or when it runs over any data.
//!
//! Inputs are mutations (by the shared mutation fuzzer, `oort-fuzz`) of every template of this
//! crate's tests (the Go parity tables) and of the README's examples, with tokens of Go's
//! template syntax and every function name inserted. A template that parses is rendered over
//! the test documents and over generated values (nulls, extreme numbers, bytes, nested objects
//! and arrays). A failure prints the seed that replays it (`OORT_FUZZ_SEED`).
//!
//! The test run gives it a short budget; `cargo xtask fuzz-parsers --only template --seconds N`
//! a long one (`OORT_FUZZ_SECONDS`).

use std::path::Path;

use oort_fuzz::{Fuzz, Rng, mutate, value};
use oort_template::Template;
use oort_value::{Value, json};

/// Templates beyond those of the tests: eKuiper's data template guide and edge cases.
const SEEDS: &[&str] = &[
    r#"{"content":{{json .}}}"#,
    r#"{{range $i, $v := .values}}{{if $i}},{{end}}{"t":{{$v.temperature}}}{{end}}"#,
    r#"{{- with .m -}}{{ .a | printf "%05.2f" }}{{- else -}}none{{- end -}}"#,
    r#"{{define "row"}}{{.ab}}{{end}}{{range .}}{{template "row" .}}{{break}}{{end}}"#,
    r#"{{$x := 1}}{{$x = add $x 2}}{{$x}} {{index .arr 1}} {{slice .ab 1 3}}"#,
    r#"{{toJson (dict "a" .i "b" (list 1 2 3))}} {{fromJson "{\"a\":1}"}}"#,
    r#"{{b64enc .ab}} {{b64dec "aGk="}} {{base64 .ab}} {{printf "%q %x %v %T" .s .i .f .m}}"#,
    r#"{{block "b" .}}{{len .}}{{end}} {{and 1 0}} {{or 0 ""}} {{not .t}} {{eq .i 7 8}}"#,
    r#"{{/* a comment */}}{{range 3}}{{.}}{{continue}}{{end}}{{ternary "a" "b" true}}"#,
];

/// Syntax and values to insert.
const TOKENS: &[&str] = &[
    "{{",
    "}}",
    "{{- ",
    " -}}",
    "{{end}}",
    "{{else}}",
    "{{else if .t}}",
    "{{else with .m}}",
    "{{range .}}",
    "{{range $k, $v := .}}",
    "{{if .n}}",
    "{{with .arr}}",
    "{{break}}",
    "{{continue}}",
    "{{define \"x\"}}",
    "{{template \"x\" .}}",
    "{{template \"x\"}}",
    "{{block \"y\" .}}",
    "{{/*",
    "*/}}",
    " ",
    ".",
    ".ab",
    ".m.c.d",
    ".arr",
    ".a.b.y",
    "$",
    "$x",
    "$x := ",
    " = ",
    "|",
    "(",
    ")",
    "\"",
    "`",
    "'a'",
    "'\\u0000'",
    "\\",
    ",",
    "nil",
    "true",
    "0",
    "-1",
    "1.5",
    "1e308",
    "0x7f",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551616",
    "2i",
    "\"%d %s %v %q %x %*d %[2]v %!\"",
    "\"\\xff\"",
    "\u{1F600}",
    "\n",
];

/// Every template literal (a Rust string literal holding `{{`) and JSON document literal of
/// this crate's tests.
fn literals() -> (Vec<String>, Vec<Value>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/tests");
    let mut templates = Vec::new();
    let mut docs = Vec::new();
    for file in ["mod.rs", "go_parity.rs"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        for literal in string_literals(&text) {
            if literal.contains("{{") {
                // Not the tests of the limits (runaway recursion, 16-million-item lists): each
                // run takes seconds of unoptimised code, and mutations reach them anyway.
                let limit_test = literal.contains("{{template \"r\"")
                    || literal
                        .split(|c: char| !c.is_ascii_digit())
                        .any(|n| n.len() >= 7);
                if !limit_test {
                    templates.push(literal);
                }
            } else if literal.starts_with(['{', '['])
                && let Ok(doc) = json::parse_value(literal.as_bytes())
            {
                docs.push(doc);
            }
        }
    }
    (templates, docs)
}

/// The string literals of Rust source text: `"..."` (with its escapes) and `r#"..."#`.
fn string_literals(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(at) = rest.find('"') {
        if rest[..at].ends_with("r#") {
            let body = &rest[at + 1..];
            let Some(end) = body.find("\"#") else { break };
            out.push(body[..end].to_string());
            rest = &body[end + 2..];
            continue;
        }
        let mut literal = String::new();
        let mut chars = rest[at + 1..].char_indices();
        let mut end = rest.len() - at - 1;
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    end = i + 1;
                    break;
                }
                '\\' => match chars.next().map(|(_, e)| e) {
                    Some('n') => literal.push('\n'),
                    Some('t') => literal.push('\t'),
                    Some('r') => literal.push('\r'),
                    Some('0') => literal.push('\0'),
                    Some('u') => {
                        let hex: String = chars
                            .by_ref()
                            .map(|(_, h)| h)
                            .take_while(|h| *h != '}')
                            .filter(char::is_ascii_hexdigit)
                            .collect();
                        if let Some(c) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32)
                        {
                            literal.push(c);
                        }
                    }
                    Some('\n') => {
                        for (_, c) in chars.by_ref() {
                            if !c.is_whitespace() {
                                literal.push(c);
                                break;
                            }
                        }
                    }
                    Some(other) => literal.push(other),
                    None => {}
                },
                c => literal.push(c),
            }
        }
        out.push(literal);
        rest = &rest[at + 1 + end..];
    }
    out
}

fn make(rng: &mut Rng, seeds: &[String], tokens: &[&str]) -> String {
    mutate(rng, seeds, tokens)
}

/// Parses a template and renders it over a test document or a generated value.
fn exec(text: &str, rng: &mut Rng, docs: &[Value]) -> String {
    let template = match Template::parse(text) {
        Ok(t) => t,
        Err(e) => return format!("parse: {e}"),
    };
    let mut outcome = "rendered".to_string();
    for _ in 0..2 {
        let dot = if rng.one_in(2) && !docs.is_empty() {
            rng.pick(docs).clone()
        } else {
            value(rng, 0)
        };
        if let Err(e) = template.render_to_string(&dot) {
            outcome = format!("exec: {e}");
        }
    }
    outcome
}

#[test]
fn no_panic_or_hang_from_templates() {
    let (mut seeds, docs) = literals();
    assert!(
        seeds.len() > 300,
        "the test templates are the seeds: found {}",
        seeds.len()
    );
    seeds.extend(SEEDS.iter().map(|s| s.to_string()));
    let names: Vec<String> = oort_template::function_names()
        .map(|f| format!(" {f} "))
        .collect();
    let tokens: Vec<&str> = TOKENS
        .iter()
        .copied()
        .chain(names.iter().map(String::as_str))
        .collect();
    Fuzz::from_env("template", 3).run(
        |rng| make(rng, &seeds, &tokens),
        |text, rng| exec(text, rng, &docs),
    );
}
