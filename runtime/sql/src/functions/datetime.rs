//! Date and time functions: the current time, parts of a date, formatting, arithmetic and time
//! zones.
//!
//! "Now" is the evaluation's processing time from [`FnCtx::now_ms`], never the system clock.
//! A datetime argument is epoch milliseconds or a date string (`timefmt::parse_time` lists the
//! layouts read); times without an offset are taken, and current times shown, in UTC. A `NULL`
//! argument gives `NULL`.

use std::str::FromStr;

use chrono::{Datelike, Duration, NaiveDate, TimeZone, Timelike};

use super::args::{any_nil, arg, bad_arg, fail, integer, string};
use super::timefmt::{
    Time, default_offset, format_pattern, from_millis, month_name, parse_duration, rfc3339,
    to_time, weekday_name,
};
use super::{FnCtx, FnError, ScalarDef};
use crate::value::Value;

type R = Result<Value, FnError>;

const fn def(
    name: &'static str,
    min: usize,
    max: usize,
    call: super::ScalarFn,
    doc: &'static str,
) -> ScalarDef {
    ScalarDef::new("datetime", name, min, Some(max), call, doc)
}

#[rustfmt::skip]
pub(super) const DEFS: &[ScalarDef] = &[
    def("cur_date", 0, 0, cur_date, "cur_date(): the current date as yyyy-MM-dd"),
    def("cur_time", 0, 1, cur_time, "cur_time([fsp]): the current time as HH:mm:ss, with fsp (1 to 6) fractional digits"),
    def("current_date", 0, 0, current_date, "current_date(): the current date as yyyy-MM-dd (same as cur_date)"),
    def("current_time", 0, 1, current_time, "current_time([fsp]): the current time as HH:mm:ss (same as cur_time)"),
    def("current_timestamp", 0, 1, current_timestamp, "current_timestamp([fsp]): the current date and time (same as now)"),
    def("date_calc", 2, 2, date_calc, "date_calc(t, duration): t moved by a duration such as 1h30m or -24h, as yyyy-MM-dd HH:mm:ss"),
    def("date_diff", 2, 2, date_diff, "date_diff(t1, t2): t2 minus t1 in nanoseconds"),
    def("day", 1, 1, day, "day(t): the day of the month of t, 1 to 31 (same as day_of_month)"),
    def("day_name", 1, 1, day_name, "day_name(t): the English name of the weekday of t, such as Monday"),
    def("day_of_month", 1, 1, day_of_month, "day_of_month(t): the day of the month of t, 1 to 31"),
    def("day_of_week", 1, 1, day_of_week, "day_of_week(t): the weekday of t, 0 for Sunday to 6 for Saturday"),
    def("day_of_year", 1, 1, day_of_year, "day_of_year(t): the day of the year of t, 1 to 366"),
    def("format_time", 2, 2, format_time, "format_time(t, pattern): t as text in a pattern such as yyyy-MM-dd HH:mm:ssSSS (S digits include the point)"),
    def("from_days", 1, 1, from_days, "from_days(n): the date n - 1 days after 1970-01-01 as yyyy-MM-dd (null for 0)"),
    def("from_unix_time", 1, 1, from_unix_time, "from_unix_time(secs): epoch seconds as yyyy-MM-dd HH:mm:ss (null for 0)"),
    def("hour", 1, 1, hour, "hour(t): the hour of t, 0 to 23"),
    def("last_day", 1, 1, last_day, "last_day(t): the last day of the month of t as yyyy-MM-dd"),
    def("local_time", 0, 1, local_time, "local_time([fsp]): the current date and time (same as now)"),
    def("local_timestamp", 0, 1, local_timestamp, "local_timestamp([fsp]): the current date and time (same as now)"),
    def("microsecond", 1, 1, microsecond, "microsecond(t): the microseconds within the second of t"),
    def("minute", 1, 1, minute, "minute(t): the minute of t, 0 to 59"),
    def("month", 1, 1, month, "month(t): the month of t, 1 to 12"),
    def("month_name", 1, 1, month_name_fn, "month_name(t): the English name of the month of t, such as January"),
    def("now", 0, 1, now, "now([fsp]): the current date and time as yyyy-MM-dd HH:mm:ss, with fsp (1 to 6) fractional digits"),
    def("second", 1, 1, second, "second(t): the second of t, 0 to 59"),
];

fn current(f: &str, ctx: &FnCtx<'_>) -> Result<Time, FnError> {
    from_millis(ctx.now_ms).ok_or_else(|| fail(f, "the current time is out of range"))
}

/// The pattern of `now`-like functions for `fsp` fractional digits.
fn fsp_pattern(f: &str, args: &[Value]) -> Result<String, FnError> {
    let fsp = if args.is_empty() || arg(args, 0).is_null() {
        0
    } else {
        integer(f, args, 0)?
    };
    let mut pattern = String::from("yyyy-MM-dd HH:mm:ss");
    if (1..=6).contains(&fsp) {
        pattern.push_str(&"S".repeat(fsp as usize));
    }
    Ok(pattern)
}

fn render(f: &str, t: &Time, pattern: &str) -> R {
    format_pattern(t, pattern)
        .map(Value::from)
        .map_err(|e| fail(f, e))
}

/// The current date and time, as `now` and its synonyms return it.
fn date_time_now(f: &str, ctx: &FnCtx<'_>, args: &[Value]) -> R {
    let pattern = fsp_pattern(f, args)?;
    render(f, &current(f, ctx)?, &pattern)
}

/// The current time of day, as `cur_time` and its synonym return it.
fn time_now(f: &str, ctx: &FnCtx<'_>, args: &[Value]) -> R {
    let pattern = fsp_pattern(f, args)?;
    let pattern = pattern.trim_start_matches("yyyy-MM-dd ");
    render(f, &current(f, ctx)?, pattern)
}

fn now(ctx: &FnCtx<'_>, args: &[Value]) -> R {
    date_time_now("now", ctx, args)
}

fn current_timestamp(ctx: &FnCtx<'_>, args: &[Value]) -> R {
    date_time_now("current_timestamp", ctx, args)
}

fn local_time(ctx: &FnCtx<'_>, args: &[Value]) -> R {
    date_time_now("local_time", ctx, args)
}

fn local_timestamp(ctx: &FnCtx<'_>, args: &[Value]) -> R {
    date_time_now("local_timestamp", ctx, args)
}

fn cur_time(ctx: &FnCtx<'_>, args: &[Value]) -> R {
    time_now("cur_time", ctx, args)
}

fn current_time(ctx: &FnCtx<'_>, args: &[Value]) -> R {
    time_now("current_time", ctx, args)
}

fn cur_date(ctx: &FnCtx<'_>, _: &[Value]) -> R {
    render("cur_date", &current("cur_date", ctx)?, "yyyy-MM-dd")
}

fn current_date(ctx: &FnCtx<'_>, _: &[Value]) -> R {
    render("current_date", &current("current_date", ctx)?, "yyyy-MM-dd")
}

fn format_time(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let t = to_time("format_time", args, 0)?;
    let pattern = string("format_time", args, 1)?;
    render("format_time", &t, pattern)
}

fn date_calc(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let t = to_time("date_calc", args, 0)?;
    let text = string("date_calc", args, 1)?;
    // A leading minus subtracts; what follows is a Go duration.
    let (sign, rest) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text),
    };
    let nanos = parse_duration(rest)
        .and_then(|n| n.checked_mul(sign))
        .ok_or_else(|| bad_arg("date_calc", args, 1, format!("invalid duration {text:?}")))?;
    let moved = t
        .checked_add_signed(Duration::nanoseconds(nanos))
        .ok_or_else(|| fail("date_calc", "the result is out of the supported time range"))?;
    render("date_calc", &moved, "yyyy-MM-dd HH:mm:ss")
}

fn date_diff(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let from = to_time("date_diff", args, 0)?;
    let to = to_time("date_diff", args, 1)?;
    let delta = to.signed_duration_since(from);
    // Like Go's Time.Sub, saturate where nanoseconds do not fit.
    Ok(Value::Int(delta.num_nanoseconds().unwrap_or(
        if delta < Duration::zero() {
            i64::MIN
        } else {
            i64::MAX
        },
    )))
}

/// A function of one datetime argument.
fn part(f: &str, args: &[Value], op: fn(&Time) -> Value) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    Ok(op(&to_time(f, args, 0)?))
}

fn day_name(_: &FnCtx<'_>, args: &[Value]) -> R {
    part("day_name", args, |t| Value::from(weekday_name(t)))
}

fn day_of_month(_: &FnCtx<'_>, args: &[Value]) -> R {
    part("day_of_month", args, |t| Value::Int(i64::from(t.day())))
}

fn day(_: &FnCtx<'_>, args: &[Value]) -> R {
    part("day", args, |t| Value::Int(i64::from(t.day())))
}

fn day_of_week(_: &FnCtx<'_>, args: &[Value]) -> R {
    part("day_of_week", args, |t| {
        Value::Int(i64::from(t.weekday().num_days_from_sunday()))
    })
}

fn day_of_year(_: &FnCtx<'_>, args: &[Value]) -> R {
    part("day_of_year", args, |t| Value::Int(i64::from(t.ordinal())))
}

fn hour(_: &FnCtx<'_>, args: &[Value]) -> R {
    part("hour", args, |t| Value::Int(i64::from(t.hour())))
}

fn minute(_: &FnCtx<'_>, args: &[Value]) -> R {
    part("minute", args, |t| Value::Int(i64::from(t.minute())))
}

fn second(_: &FnCtx<'_>, args: &[Value]) -> R {
    part("second", args, |t| Value::Int(i64::from(t.second())))
}

fn microsecond(_: &FnCtx<'_>, args: &[Value]) -> R {
    part("microsecond", args, |t| {
        Value::Int(i64::from(t.nanosecond() % 1_000_000_000 / 1_000))
    })
}

fn month(_: &FnCtx<'_>, args: &[Value]) -> R {
    part("month", args, |t| Value::Int(i64::from(t.month())))
}

fn month_name_fn(_: &FnCtx<'_>, args: &[Value]) -> R {
    part("month_name", args, |t| Value::from(month_name(t)))
}

fn last_day(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let t = to_time("last_day", args, 0)?;
    let (year, month) = if t.month() == 12 {
        (t.year() + 1, 1)
    } else {
        (t.year(), t.month() + 1)
    };
    let last = NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|d| d.pred_opt())
        .ok_or_else(|| fail("last_day", "the date is out of the supported range"))?;
    Ok(Value::from(last.format("%Y-%m-%d").to_string()))
}

fn from_days(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let days = integer("from_days", args, 0)?;
    if days == 0 {
        return Ok(Value::Null);
    }
    let date = days
        .checked_sub(1)
        .and_then(Duration::try_days)
        .and_then(|d| NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(d))
        .ok_or_else(|| bad_arg("from_days", args, 0, format!("{days} days is out of range")))?;
    Ok(Value::from(date.format("%Y-%m-%d").to_string()))
}

fn from_unix_time(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let secs = integer("from_unix_time", args, 0)?;
    if secs == 0 {
        return Ok(Value::Null);
    }
    let t = default_offset()
        .timestamp_opt(secs, 0)
        .single()
        .ok_or_else(|| bad_arg("from_unix_time", args, 0, format!("{secs} is out of range")))?;
    render("from_unix_time", &t, "yyyy-MM-dd HH:mm:ss")
}

/// `convert_tz(t, zone)`: `t` shown in an IANA time zone, as RFC 3339 text.
pub(super) fn convert_tz(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let t = to_time("convert_tz", args, 0)?;
    let zone = string("convert_tz", args, 1)?;
    let shown = match zone {
        // eKuiper's "Local" is its configured zone, which is UTC here.
        "" | "UTC" | "Local" => t.with_timezone(&default_offset()),
        name => {
            let tz = chrono_tz::Tz::from_str(name)
                .map_err(|_| bad_arg("convert_tz", args, 1, format!("unknown time zone {name}")))?;
            t.with_timezone(&tz).fixed_offset()
        }
    };
    Ok(Value::from(rfc3339(&shown)))
}

/// `to_seconds(t)`: `t` in whole seconds since the Unix epoch.
pub(super) fn to_seconds(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    Ok(Value::Int(to_time("to_seconds", args, 0)?.timestamp()))
}

/// `cast(x, "datetime")`: `x` read as an instant, as RFC 3339 text.
pub(super) fn datetime_text(f: &str, args: &[Value], i: usize) -> R {
    Ok(Value::from(rfc3339(&to_time(f, args, i)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2023-11-14T22:13:20.123Z, a Tuesday.
    const NOW: i64 = 1_700_000_000_123;

    fn call(name: &str, args: &[Value]) -> R {
        let meta = Value::Null;
        let ctx = FnCtx {
            now_ms: NOW,
            meta: &meta,
            timestamp_ms: 42,
        };
        let def = DEFS.iter().find(|d| d.name == name).expect("function");
        (def.call)(&ctx, args)
    }

    fn s(x: &str) -> Value {
        Value::from(x)
    }

    fn i(x: i64) -> Value {
        Value::Int(x)
    }

    #[test]
    fn current_time_comes_from_the_context() {
        assert_eq!(call("now", &[]), Ok(s("2023-11-14 22:13:20")));
        assert_eq!(call("now", &[i(3)]), Ok(s("2023-11-14 22:13:20.123")));
        assert_eq!(
            call("current_timestamp", &[i(6)]),
            Ok(s("2023-11-14 22:13:20.123000"))
        );
        assert_eq!(call("local_time", &[i(9)]), Ok(s("2023-11-14 22:13:20")));
        assert_eq!(
            call("local_timestamp", &[i(1)]),
            Ok(s("2023-11-14 22:13:20.1"))
        );
        assert!(call("now", &[s("3")]).is_err());
        assert_eq!(call("cur_date", &[]), Ok(s("2023-11-14")));
        assert_eq!(call("current_date", &[]), Ok(s("2023-11-14")));
        assert_eq!(call("cur_time", &[]), Ok(s("22:13:20")));
        assert_eq!(call("current_time", &[i(2)]), Ok(s("22:13:20.12")));
        assert!(call("cur_time", &[Value::Float(1.5)]).is_err());
    }

    #[test]
    fn current_time_out_of_range_is_an_error() {
        let meta = Value::Null;
        let ctx = FnCtx {
            now_ms: i64::MAX,
            meta: &meta,
            timestamp_ms: 0,
        };
        for name in [
            "now",
            "current_timestamp",
            "local_time",
            "local_timestamp",
            "cur_date",
            "current_date",
            "cur_time",
            "current_time",
        ] {
            let def = DEFS.iter().find(|d| d.name == name).expect("function");
            let err = (def.call)(&ctx, &[]).unwrap_err().0;
            assert!(err.starts_with(name), "{err}");
        }
        let before_epoch = FnCtx {
            now_ms: -1,
            meta: &meta,
            timestamp_ms: 0,
        };
        let now = DEFS.iter().find(|d| d.name == "now").expect("now");
        assert_eq!(
            (now.call)(&before_epoch, &[i(3)]),
            Ok(s("1969-12-31 23:59:59.999"))
        );
    }

    #[test]
    fn format_time_renders_patterns() {
        assert_eq!(
            call("format_time", &[i(NOW), s("yyyy-MM-dd HH:mm:ssSSS")]),
            Ok(s("2023-11-14 22:13:20.123"))
        );
        assert_eq!(
            call(
                "format_time",
                &[s("2019-01-01T08:00:00+08:00"), s("HH XXX")]
            ),
            Ok(s("08 +08:00"))
        );
        assert_eq!(
            call("format_time", &[Value::Null, s("yyyy")]),
            Ok(Value::Null)
        );
        assert!(call("format_time", &[i(NOW), s("Y")]).is_err());
        assert!(call("format_time", &[s("not a date"), s("yyyy")]).is_err());
        assert!(call("format_time", &[Value::Bool(true), s("yyyy")]).is_err());
    }

    #[test]
    fn date_calc_moves_by_a_duration() {
        assert_eq!(
            call("date_calc", &[s("2019-01-01 00:00:00"), s("24h")]),
            Ok(s("2019-01-02 00:00:00"))
        );
        assert_eq!(
            call("date_calc", &[s("2019-01-01 00:00:00"), s("-1h30m")]),
            Ok(s("2018-12-31 22:30:00"))
        );
        assert!(call("date_calc", &[s("2019-01-01"), s("1d")]).is_err());
        assert!(call("date_calc", &[s("2019-01-01"), i(5)]).is_err());
        assert_eq!(call("date_calc", &[Value::Null, s("1h")]), Ok(Value::Null));
    }

    #[test]
    fn date_diff_in_nanoseconds() {
        assert_eq!(
            call(
                "date_diff",
                &[s("2019-01-01 00:00:00"), s("2019-01-02 00:00:00")]
            ),
            Ok(i(86_400_000_000_000))
        );
        assert_eq!(call("date_diff", &[i(1000), i(0)]), Ok(i(-1_000_000_000)));
        assert_eq!(
            call("date_diff", &[s("1000-01-01"), s("9000-01-01")]),
            Ok(i(i64::MAX))
        );
        assert!(call("date_diff", &[s("x"), i(0)]).is_err());
    }

    #[test]
    fn date_parts() {
        let t = s("2019-01-01 13:14:15.678901");
        assert_eq!(call("day_name", std::slice::from_ref(&t)), Ok(s("Tuesday")));
        assert_eq!(call("day_of_month", std::slice::from_ref(&t)), Ok(i(1)));
        assert_eq!(call("day", &[s("2019-02-28")]), Ok(i(28)));
        assert_eq!(call("day_of_week", std::slice::from_ref(&t)), Ok(i(2)));
        assert_eq!(call("day_of_week", &[s("2019-01-06")]), Ok(i(0)));
        assert_eq!(call("day_of_year", &[s("2019-12-31")]), Ok(i(365)));
        assert_eq!(call("hour", std::slice::from_ref(&t)), Ok(i(13)));
        assert_eq!(call("minute", std::slice::from_ref(&t)), Ok(i(14)));
        assert_eq!(call("second", std::slice::from_ref(&t)), Ok(i(15)));
        assert_eq!(
            call("microsecond", std::slice::from_ref(&t)),
            Ok(i(678_901))
        );
        assert_eq!(call("month", std::slice::from_ref(&t)), Ok(i(1)));
        assert_eq!(call("month_name", &[t]), Ok(s("January")));
        assert_eq!(call("hour", &[i(NOW)]), Ok(i(22)));
        assert_eq!(call("hour", &[s("2019-01-01T13:00:00+08:00")]), Ok(i(13)));
        for f in [
            "day_name",
            "day_of_month",
            "day",
            "day_of_week",
            "day_of_year",
            "hour",
            "minute",
            "second",
            "microsecond",
            "month",
            "month_name",
        ] {
            assert_eq!(call(f, &[Value::Null]), Ok(Value::Null), "{f}");
            assert!(call(f, &[s("soon")]).is_err(), "{f}");
            assert!(call(f, &[Value::array(vec![i(1)])]).is_err(), "{f}");
        }
    }

    #[test]
    fn last_day_of_month() {
        assert_eq!(
            call("last_day", &[s("2019-01-01 01:00:00")]),
            Ok(s("2019-01-31"))
        );
        assert_eq!(call("last_day", &[s("2020-02-10")]), Ok(s("2020-02-29")));
        assert_eq!(call("last_day", &[s("2019-12-05")]), Ok(s("2019-12-31")));
        assert!(call("last_day", &[s("2019-13-05")]).is_err());
    }

    #[test]
    fn days_and_unix_seconds() {
        assert_eq!(call("from_days", &[i(100)]), Ok(s("1970-04-10")));
        assert_eq!(call("from_days", &[i(1)]), Ok(s("1970-01-01")));
        assert_eq!(call("from_days", &[i(0)]), Ok(Value::Null));
        assert!(call("from_days", &[i(i64::MAX)]).is_err());
        assert!(call("from_days", &[Value::Float(1.5)]).is_err());
        assert_eq!(
            call("from_unix_time", &[i(1_700_000_000)]),
            Ok(s("2023-11-14 22:13:20"))
        );
        assert_eq!(call("from_unix_time", &[i(0)]), Ok(Value::Null));
        assert!(call("from_unix_time", &[i(i64::MAX)]).is_err());
        assert!(call("from_unix_time", &[s("1")]).is_err());
    }

    #[test]
    fn time_zones_and_seconds() {
        let ctx_call = |f: ScalarFnRef, args: &[Value]| {
            let meta = Value::Null;
            let ctx = FnCtx {
                now_ms: NOW,
                meta: &meta,
                timestamp_ms: 0,
            };
            f(&ctx, args)
        };
        assert_eq!(
            ctx_call(convert_tz, &[i(NOW), s("Asia/Shanghai")]),
            Ok(s("2023-11-15T06:13:20.123+08:00"))
        );
        assert_eq!(
            ctx_call(
                convert_tz,
                &[s("2023-07-01 12:00:00"), s("America/New_York")]
            ),
            Ok(s("2023-07-01T08:00:00-04:00"))
        );
        assert_eq!(
            ctx_call(convert_tz, &[s("2023-07-01T12:00:00+02:00"), s("UTC")]),
            Ok(s("2023-07-01T10:00:00Z"))
        );
        assert!(ctx_call(convert_tz, &[i(0), s("Mars/Olympus")]).is_err());
        assert!(ctx_call(convert_tz, &[i(0), i(8)]).is_err());
        assert_eq!(ctx_call(to_seconds, &[i(NOW)]), Ok(i(1_700_000_000)));
        assert_eq!(ctx_call(to_seconds, &[i(-1)]), Ok(i(-1)));
        assert!(ctx_call(to_seconds, &[Value::Bool(false)]).is_err());
        assert_eq!(
            datetime_text("cast", &[Value::Float(1.5e12)], 0),
            Ok(s("2017-07-14T02:40:00Z"))
        );
    }

    type ScalarFnRef = super::super::ScalarFn;
}
