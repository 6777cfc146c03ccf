//! Go-style durations (`"300ms"`, `"1.5s"`, `"1h2m"`), the way eKuiper writes them in options.

/// Parses a Go duration into milliseconds; a bare number is milliseconds. `None` when invalid.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<u64>() {
        return Some(ms);
    }
    if text.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_end == 0 {
            return None;
        }
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let per_ms = match &rest[..unit_end] {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1e3,
            "m" => 60e3,
            "h" => 3600e3,
            _ => return None,
        };
        total += number * per_ms;
        rest = &rest[unit_end..];
    }
    (total.is_finite() && total >= 0.0).then(|| total.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_duration_ms("1500"), Some(1500));
        assert_eq!(parse_duration_ms("300ms"), Some(300));
        assert_eq!(parse_duration_ms("1.5s"), Some(1500));
        assert_eq!(parse_duration_ms("1h2m"), Some(3_720_000));
        assert_eq!(parse_duration_ms("10x"), None);
        assert_eq!(parse_duration_ms("s"), None);
        assert_eq!(parse_duration_ms(""), None);
    }
}
