//! Date and time plumbing for the date/time functions: reading a value as an instant, parsing
//! date strings, rendering eKuiper's format patterns, and Go-style durations (`1h30m`).
//!
//! There is no datetime value type: an instant is passed around as epoch milliseconds (a
//! number) or as a date string, and functions that produce one return RFC 3339 text. Times
//! without an explicit offset are read, and epoch times shown, in UTC.

use chrono::{
    DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone,
    Timelike, Utc,
};

use super::FnError;
use super::args::{arg, bad_arg, f64_to_i64};
use crate::value::Value;

/// An instant together with the UTC offset it is shown in.
pub(super) type Time = DateTime<FixedOffset>;

/// The offset of times that carry none: UTC.
pub(super) fn default_offset() -> FixedOffset {
    Utc.fix()
}

/// The instant `ms` milliseconds after the Unix epoch, in UTC.
pub(super) fn from_millis(ms: i64) -> Option<Time> {
    DateTime::from_timestamp_millis(ms).map(|t| t.fixed_offset())
}

/// Argument `i` read as an instant: epoch milliseconds (a number) or a date string.
pub(super) fn to_time(f: &str, args: &[Value], i: usize) -> Result<Time, FnError> {
    match arg(args, i) {
        Value::Int(ms) => from_millis(*ms).ok_or_else(|| {
            bad_arg(
                f,
                args,
                i,
                format!("{ms} is out of the supported time range"),
            )
        }),
        Value::Float(ms) => f64_to_i64(*ms).and_then(from_millis).ok_or_else(|| {
            bad_arg(
                f,
                args,
                i,
                format!("{ms} is out of the supported time range"),
            )
        }),
        Value::String(s) => parse_time(s)
            .ok_or_else(|| bad_arg(f, args, i, format!("cannot read {s:?} as a date and time"))),
        // eKuiper's text (`cast.InterfaceToTime`); a datetime is epoch milliseconds or a date
        // string.
        v => Err(bad_arg(
            f,
            args,
            i,
            format!(
                "unsupported type to convert to timestamp {}",
                crate::wording::go_value(v)
            ),
        )),
    }
}

/// Reads a date string in one of the common layouts: `2006-01-02`, `2006/01/02`, `2006.01.02`,
/// `20060102`, `1/2/2006`, `2006`, `2006-01`, each optionally followed by a time (` ` or `T`,
/// `15`, `15:04`, `15:04:05`, `15:04:05.999999999`) and an offset (`Z`, `UTC`, `-07`, `-0700`,
/// `-07:00`, optionally followed by a zone abbreviation); also RFC 2822 (`Mon, 02 Jan 2006
/// 15:04:05 -0700`), ANSI C (`Mon Jan  2 15:04:05 2006`) and Ruby (`Mon Jan 02 15:04:05 -0700
/// 2006`) dates.
pub(super) fn parse_time(s: &str) -> Option<Time> {
    let s = s.trim();
    parse_numeric(s)
        .or_else(|| DateTime::parse_from_rfc2822(s).ok())
        .or_else(|| DateTime::parse_from_str(s, "%a %b %d %H:%M:%S %z %Y").ok())
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%a %b %e %H:%M:%S %Y")
                .ok()
                .and_then(|t| default_offset().from_local_datetime(&t).single())
        })
}

struct Scan<'a> {
    s: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn eat_spaces(&mut self) -> bool {
        let start = self.i;
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
        self.i > start
    }

    /// One to `max` digits: their value and how many there were.
    fn digits(&mut self, max: usize) -> Option<(u32, usize)> {
        let mut value: u32 = 0;
        let mut n = 0;
        while n < max {
            match self.peek() {
                Some(b @ b'0'..=b'9') => {
                    value = value * 10 + u32::from(b - b'0');
                    n += 1;
                    self.i += 1;
                }
                _ => break,
            }
        }
        (n > 0).then_some((value, n))
    }

    fn done(&self) -> bool {
        self.i >= self.s.len()
    }
}

fn parse_numeric(s: &str) -> Option<Time> {
    let mut p = Scan {
        s: s.as_bytes(),
        i: 0,
    };
    let date = parse_date(&mut p)?;
    let mut time = NaiveTime::MIN;
    let before_time = p.i;
    if p.eat(b'T') || p.eat_spaces() {
        match parse_clock(&mut p) {
            Some(t) => time = t,
            None => p.i = before_time,
        }
    }
    p.eat_spaces();
    let offset = if p.done() {
        default_offset()
    } else {
        parse_offset(&mut p)?
    };
    p.eat_spaces();
    if !p.done() {
        return None;
    }
    offset.from_local_datetime(&date.and_time(time)).single()
}

fn parse_date(p: &mut Scan<'_>) -> Option<NaiveDate> {
    let (first, n) = p.digits(8)?;
    let (year, month, day) = if n == 8 {
        (first / 10_000, first / 100 % 100, first % 100)
    } else {
        match p.peek() {
            Some(b'/') if n <= 2 => {
                p.i += 1;
                let (day, _) = p.digits(2)?;
                if !p.eat(b'/') {
                    return None;
                }
                let (year, ny) = p.digits(4)?;
                if ny != 4 {
                    return None;
                }
                (year, first, day)
            }
            Some(sep @ (b'-' | b'/' | b'.')) if n == 4 => {
                p.i += 1;
                let (month, _) = p.digits(2)?;
                let day = if p.eat(sep) { p.digits(2)?.0 } else { 1 };
                (first, month, day)
            }
            _ if n == 4 => (first, 1, 1),
            _ => return None,
        }
    };
    NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)
}

fn parse_clock(p: &mut Scan<'_>) -> Option<NaiveTime> {
    let (hour, _) = p.digits(2)?;
    let (mut minute, mut second, mut nano) = (0, 0, 0);
    if p.eat(b':') {
        minute = p.digits(2)?.0;
        if p.eat(b':') {
            second = p.digits(2)?.0;
            if p.peek() == Some(b'.') || p.peek() == Some(b',') {
                p.i += 1;
                let start = p.i;
                while matches!(p.peek(), Some(b'0'..=b'9')) {
                    p.i += 1;
                }
                let digits = &p.s[start..p.i];
                if digits.is_empty() {
                    return None;
                }
                for k in 0..9 {
                    nano = nano * 10 + digits.get(k).map_or(0, |d| u32::from(d - b'0'));
                }
            }
        }
    }
    NaiveTime::from_hms_nano_opt(hour, minute, second, nano)
}

fn parse_offset(p: &mut Scan<'_>) -> Option<FixedOffset> {
    let offset = match p.peek()? {
        b'Z' => {
            p.i += 1;
            default_offset()
        }
        sign @ (b'+' | b'-') => {
            p.i += 1;
            let (hours, n) = p.digits(2)?;
            if n != 2 {
                return None;
            }
            let colon = p.eat(b':');
            let minutes = match p.digits(2) {
                Some((m, 2)) => m,
                None if !colon => 0,
                _ => return None,
            };
            let secs = i32::try_from(hours * 3600 + minutes * 60).ok()?;
            FixedOffset::east_opt(if sign == b'-' { -secs } else { secs })?
        }
        _ => {
            let name = zone_name(p);
            return matches!(name, "UTC" | "GMT").then(default_offset);
        }
    };
    // A zone abbreviation may follow a numeric offset: `-0700 MST`.
    let before = p.i;
    p.eat_spaces();
    if zone_name(p).is_empty() {
        p.i = before;
    }
    Some(offset)
}

fn zone_name<'a>(p: &mut Scan<'a>) -> &'a str {
    let start = p.i;
    while matches!(p.peek(), Some(b'A'..=b'Z')) {
        p.i += 1;
    }
    std::str::from_utf8(&p.s[start..p.i]).unwrap_or("")
}

/// `+hh:mm` (or `+hhmm` without `colon`) for an offset in seconds.
fn offset_text(secs: i32, colon: bool) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let minutes = secs.unsigned_abs() / 60;
    if colon {
        format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
    } else {
        format!("{sign}{:02}{:02}", minutes / 60, minutes % 60)
    }
}

fn year_text(year: i32) -> String {
    if year < 0 {
        format!("-{:04}", year.unsigned_abs())
    } else {
        format!("{year:04}")
    }
}

/// RFC 3339 text with as many fractional digits as needed and `Z` for UTC, as eKuiper writes a
/// datetime into JSON.
pub(super) fn rfc3339(t: &Time) -> String {
    let mut out = format!(
        "{}-{:02}-{:02}T{:02}:{:02}:{:02}",
        year_text(t.year()),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = t.nanosecond() % 1_000_000_000;
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    let secs = t.offset().local_minus_utc();
    if secs == 0 {
        out.push('Z');
    } else {
        out.push_str(&offset_text(secs, true));
    }
    out
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// The English name of the month of `t`.
pub(super) fn month_name(t: &Time) -> &'static str {
    MONTHS[t.month0() as usize % 12]
}

/// The English name of the weekday of `t`.
pub(super) fn weekday_name(t: &Time) -> &'static str {
    WEEKDAYS[t.weekday().num_days_from_sunday() as usize % 7]
}

/// Renders `t` with an eKuiper format pattern: `YYYY`/`yyyy` `YY` year, `M` `MM` `MMM` `MMMM`
/// month, `d` `dd` day, `EEE` `EEEE` weekday, `HH` hour, `h` `hh` 12-hour, `a` AM/PM, `m` `mm`
/// minute, `s` `ss` second, `S`... fraction, `z` zone, `Z` `XX` `-0700`, `X` `-07`, `XXX`
/// `-07:00`, `G` era, `'text'` literal text, `''` a quote, `\c` the character c. Other
/// characters are copied.
pub(super) fn format_pattern(t: &Time, pattern: &str) -> Result<String, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    // How many times `c` repeats from `i`, counting at most `max + 1` (one more than any
    // meaningful length, which then prints nothing).
    let run = |i: usize, c: char, max: usize| {
        chars[i..]
            .iter()
            .take(max + 1)
            .take_while(|&&x| x == c)
            .count()
    };
    let offset = t.offset().local_minus_utc();
    while i < chars.len() {
        let c = chars[i];
        let mut n = 1;
        match c {
            '\\' => {
                let next = chars
                    .get(i + 1)
                    .ok_or_else(|| format!("the pattern {pattern:?} ends with an escape"))?;
                out.push(*next);
                n = 2;
            }
            'Y' | 'y' => {
                n = run(i, c, 4);
                match n {
                    4 => out.push_str(&year_text(t.year())),
                    2 => out.push_str(&format!("{:02}", t.year().rem_euclid(100))),
                    _ => return Err(format!("invalid year field in pattern {pattern:?}")),
                }
            }
            'G' => out.push_str("AD"),
            'M' => {
                n = run(i, c, 4);
                match n {
                    1 => out.push_str(&t.month().to_string()),
                    2 => out.push_str(&format!("{:02}", t.month())),
                    3 => out.push_str(&month_name(t)[..3]),
                    4 => out.push_str(month_name(t)),
                    _ => {}
                }
            }
            'd' => {
                n = run(i, c, 2);
                match n {
                    1 => out.push_str(&t.day().to_string()),
                    2 => out.push_str(&format!("{:02}", t.day())),
                    _ => {}
                }
            }
            'E' => {
                n = run(i, c, 4);
                match n {
                    3 => out.push_str(&weekday_name(t)[..3]),
                    4 => out.push_str(weekday_name(t)),
                    _ => return Err(format!("invalid weekday field in pattern {pattern:?}")),
                }
            }
            'H' => {
                n = run(i, c, 2);
                if n != 2 {
                    return Err(format!(
                        "invalid hour field in pattern {pattern:?}: only HH is supported"
                    ));
                }
                out.push_str(&format!("{:02}", t.hour()));
            }
            'h' => {
                n = run(i, c, 2);
                let h12 = match t.hour() % 12 {
                    0 => 12,
                    h => h,
                };
                match n {
                    1 => out.push_str(&h12.to_string()),
                    2 => out.push_str(&format!("{h12:02}")),
                    _ => {}
                }
            }
            'a' => out.push_str(if t.hour() < 12 { "AM" } else { "PM" }),
            'm' | 's' => {
                n = run(i, c, 2);
                let v = if c == 'm' { t.minute() } else { t.second() };
                match n {
                    1 => out.push_str(&v.to_string()),
                    2 => out.push_str(&format!("{v:02}")),
                    _ => {}
                }
            }
            'S' => {
                n = run(i, c, usize::MAX - 1);
                let fraction = format!("{:09}", t.nanosecond() % 1_000_000_000);
                out.push('.');
                out.push_str(&fraction[..n.min(9)]);
            }
            'z' => {
                if offset == 0 {
                    out.push_str("UTC");
                } else {
                    out.push_str(&offset_text(offset, false));
                }
            }
            'Z' => out.push_str(&offset_text(offset, false)),
            'X' => {
                n = run(i, c, 3);
                match n {
                    1 => out.push_str(&offset_text(offset, false)[..3]),
                    2 => out.push_str(&offset_text(offset, false)),
                    3 => out.push_str(&offset_text(offset, true)),
                    _ => {}
                }
            }
            '\'' => {
                if chars.get(i + 1) == Some(&'\'') {
                    out.push('\'');
                    n = 2;
                } else {
                    let literal: String =
                        chars[i + 1..].iter().take_while(|&&x| x != '\'').collect();
                    n = literal.chars().count() + 2;
                    out.push_str(&literal);
                }
            }
            other => out.push(other),
        }
        i += n;
    }
    Ok(out)
}

/// A Go duration such as `300ms`, `-1.5h` or `2h45m` in nanoseconds. Units: `ns`, `us` (or
/// `µs`), `ms`, `s`, `m`, `h`.
pub(super) fn parse_duration(text: &str) -> Option<i64> {
    const LIMIT: u128 = 1 << 63;
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let digits_end = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (whole, after) = rest.split_at(digits_end(rest));
        let (fraction, after) = match after.strip_prefix('.') {
            Some(r) => r.split_at(digits_end(r)),
            None => ("", after),
        };
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let unit_end = after
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let mut nanos = whole.checked_mul(scale)?;
        if !fraction.is_empty() {
            let kept = &fraction[..fraction.len().min(18)];
            let f: u64 = kept.parse().ok()?;
            let per_unit = scale as f64 / 10f64.powi(kept.len() as i32);
            nanos = nanos.checked_add((f as f64 * per_unit) as u128)?;
        }
        total = total.checked_add(nanos)?;
        if total > LIMIT {
            return None;
        }
        rest = after;
    }
    if negative {
        if total == LIMIT {
            Some(i64::MIN)
        } else {
            Some(-(total as i64))
        }
    } else {
        i64::try_from(total).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Time {
        parse_time(s).unwrap_or_else(|| panic!("cannot parse {s}"))
    }

    #[test]
    fn parses_common_layouts() {
        let base = "2019-01-02T03:04:05Z";
        for s in [
            "2019-01-02 03:04:05",
            "2019-1-2 3:4:5",
            "2019/01/02 03:04:05",
            "2019.01.02 03:04:05",
            "2019-01-02T03:04:05Z",
            "2019-01-02T03:04:05+00:00",
            "2019-01-02T11:04:05+08:00",
            "2019-01-02T11:04:05+0800",
            "2019-01-02T11:04:05+08",
            "2019-01-02 11:04:05 +0800 CST",
            "2019-01-02 03:04:05 UTC",
            "Wed, 02 Jan 2019 03:04:05 +0000",
            "Wed Jan  2 03:04:05 2019",
            "Wed Jan 02 03:04:05 +0000 2019",
        ] {
            assert_eq!(
                rfc3339(&at(s).with_timezone(&Utc).fixed_offset()),
                base,
                "{s}"
            );
        }
        assert_eq!(rfc3339(&at("20190102")), "2019-01-02T00:00:00Z");
        assert_eq!(rfc3339(&at("1/2/2019")), "2019-01-02T00:00:00Z");
        assert_eq!(rfc3339(&at("2019")), "2019-01-01T00:00:00Z");
        assert_eq!(rfc3339(&at("2019-03")), "2019-03-01T00:00:00Z");
        assert_eq!(rfc3339(&at("2019-01-02 15")), "2019-01-02T15:00:00Z");
        assert_eq!(
            rfc3339(&at("2019-01-02T03:04:05.120Z")),
            "2019-01-02T03:04:05.12Z"
        );
        assert_eq!(
            rfc3339(&at("2019-01-02 03:04:05.1234567891")),
            "2019-01-02T03:04:05.123456789Z"
        );
        assert_eq!(
            rfc3339(&at("2019-01-02T03:04:05-07:30")),
            "2019-01-02T03:04:05-07:30"
        );
    }

    #[test]
    fn rejects_what_is_not_a_date() {
        for s in [
            "",
            "abc",
            "2019-13-01",
            "2019-02-30",
            "2019-01-01 25:00:00",
            "2019-01-01T",
            "2019-01-01 10:00:00 +5",
            "2019-01-01 10:00:00 PST",
            "15:04:05",
            "19-01-01",
            "2019-01-01 x",
            "2019-01-01 10:00:00.",
        ] {
            assert!(parse_time(s).is_none(), "{s:?} should not parse");
        }
    }

    #[test]
    fn formats_patterns() {
        let t = at("2006-01-02T15:04:05.123456789-07:00");
        let f = |p: &str| format_pattern(&t, p).unwrap();
        assert_eq!(f("YYYY-MM-dd T HH:mm:ss"), "2006-01-02 T 15:04:05");
        assert_eq!(
            f("YYYY/MM/dd HH:mm:ssSSS XXX"),
            "2006/01/02 15:04:05.123 -07:00"
        );
        assert_eq!(
            f("yyyy-MM-ddTHH:mm:ssSS\\ZXX"),
            "2006-01-02T15:04:05.12Z-0700"
        );
        assert_eq!(f("yy M d h:m:s a"), "06 1 2 3:4:5 PM");
        assert_eq!(f("MMM MMMM EEE EEEE G"), "Jan January Mon Monday AD");
        assert_eq!(f("hh X Z z"), "03 -07 -0700 -0700");
        assert_eq!(f("'at' HH'h' ''"), "at 15h '");
        assert_eq!(f("SSSSSSSSSSSS"), ".123456789");
        let utc = at("2006-01-02T00:00:00Z");
        assert_eq!(
            format_pattern(&utc, "z XXX h a").unwrap(),
            "UTC +00:00 12 AM"
        );
        assert!(format_pattern(&t, "Y").is_err());
        assert!(format_pattern(&t, "YYY").is_err());
        assert!(format_pattern(&t, "H").is_err());
        assert!(format_pattern(&t, "E").is_err());
        assert!(format_pattern(&t, "abc\\").is_err());
        assert_eq!(format_pattern(&t, "'unclosed").unwrap(), "unclosed");
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_duration("-1.5h"), Some(-5_400_000_000_000));
        assert_eq!(parse_duration("300ms"), Some(300_000_000));
        assert_eq!(
            parse_duration("1h30m10s100ms200us300ns"),
            Some(5_410_100_200_300)
        );
        assert_eq!(parse_duration("2µs"), Some(2_000));
        assert_eq!(parse_duration(".5s"), Some(500_000_000));
        assert_eq!(parse_duration("0"), Some(0));
        assert_eq!(parse_duration("-9223372036854775808ns"), Some(i64::MIN));
        let huge = format!("{}.9h", u128::MAX / 3_600_000_000_000);
        for bad in [
            "",
            "1",
            "1d",
            "h",
            ".s",
            "9223372036854775808ns",
            "1h-1m",
            "--",
            &huge,
            "340282366920938463463374607431768211456ns",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn random_text_never_panics() {
        let alphabet: Vec<char> = "0123456789-+:.,TZ /yYMdEHhmsSzXaGU'\\µnu".chars().collect();
        let t = at("2006-01-02T15:04:05.5+05:30");
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 24) as usize;
            let text: String = (0..len)
                .map(|k| alphabet[((seed >> (k % 8 * 8)) as usize + k * 7) % alphabet.len()])
                .collect();
            let _ = parse_time(&text);
            let _ = parse_duration(&text);
            let _ = format_pattern(&t, &text);
        }
    }

    #[test]
    fn converts_epoch_millis() {
        let t = from_millis(1_700_000_000_123).unwrap();
        assert_eq!(rfc3339(&t), "2023-11-14T22:13:20.123Z");
        assert_eq!(from_millis(i64::MAX), None);
        assert_eq!(month_name(&t), "November");
        assert_eq!(weekday_name(&t), "Tuesday");
    }
}
