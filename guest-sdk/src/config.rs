//! Decoding the action's props into the sink's `Config`, with messages that name the prop, the
//! value and the expected type, and suggest the closest known prop for a misspelt one.

use serde::de::DeserializeOwned;

/// Decodes the props JSON object the host passes to `configure`.
///
/// A wrong value: ``prop `logEvery`: invalid type: string "10", expected u64``. An unknown prop
/// (with `deny_unknown_fields`): ``prop `paht`: unknown field `paht`, expected `path` (did you
/// mean `path`?)``. Positions in the JSON text are left out: the host wrote that text, not the
/// user.
pub(crate) fn decode<T: DeserializeOwned>(props: &str) -> Result<T, String> {
    let value: serde_json::Value =
        serde_json::from_str(props).map_err(|e| format!("props are not JSON: {e}"))?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        match unknown_field(&message) {
            Some((field, expected)) => {
                let hint = did_you_mean(field, &expected)
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_default();
                format!("prop `{field}`: {message}{hint}")
            }
            None if path == "." => format!("props: {message}"),
            None => format!("prop `{path}`: {message}"),
        }
    })
}

/// The unknown field and the expected ones, from serde's "unknown field `x`, expected `a`" or
/// "…, expected one of `a`, `b`".
fn unknown_field(message: &str) -> Option<(&str, Vec<&str>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    Some((field, rest.split('`').skip(1).step_by(2).collect()))
}

/// The closest of `candidates` to `word`, if close enough to be a typo.
fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|&c| {
            let score = strsim::jaro_winkler(&word.to_ascii_lowercase(), &c.to_ascii_lowercase());
            (score, c)
        })
        .filter(|&(score, _)| score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[expect(dead_code, reason = "only decoded")]
    struct Config {
        path: String,
        #[serde(default)]
        log_every: u64,
    }

    #[test]
    fn a_wrong_value_names_the_prop_value_and_type() {
        let e = decode::<Config>(r#"{"path":"a","logEvery":"10"}"#).unwrap_err();
        assert_eq!(
            e,
            r#"prop `logEvery`: invalid type: string "10", expected u64"#
        );
    }

    #[test]
    fn an_unknown_prop_gets_a_suggestion() {
        let e = decode::<Config>(r#"{"paht":"a"}"#).unwrap_err();
        assert!(e.starts_with("prop `paht`: unknown field `paht`"), "{e}");
        assert!(e.ends_with("(did you mean `path`?)"), "{e}");
        let e = decode::<Config>(r#"{"path":"a","color":1}"#).unwrap_err();
        assert!(!e.contains("did you mean"), "{e}");
    }

    #[test]
    fn a_missing_prop_is_named() {
        let e = decode::<Config>("{}").unwrap_err();
        assert_eq!(e, "props: missing field `path`");
    }
}
