//! Go's `fmt` printing of Oort values: `%v` (what an action prints), `Sprint` and `Sprintln`
//! spacing, `Sprintf` verbs and flags, float formatting and `%q` quoting.
//!
//! Values print as the Go values eKuiper hands its templates would: `int64`, `float64`,
//! `string`, `bool`, `[]interface {}`, `map[string]interface {}` (keys sorted), `[]uint8`.

use super::exec::Val;
use crate::value::Value;

/// The Go type name of a value, for `%!verb(type=value)` and error messages.
pub(crate) const fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "interface {}",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int64",
        Value::Float(_) => "float64",
        Value::String(_) => "string",
        Value::Bytes(_) => "[]uint8",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// Go's `reflect.Kind` name of a value (sprig's `kindOf`).
pub(crate) const fn go_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "invalid",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int64",
        Value::Float(_) => "float64",
        Value::String(_) => "string",
        Value::Bytes(_) | Value::Array(_) => "slice",
        Value::Object(_) => "map",
    }
}

/// Appends `%v` of a value, as `fmt.Print` writes it.
pub(crate) fn write_v(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"<nil>"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        Value::Float(f) => write_float_v(out, *f),
        Value::String(s) => out.extend_from_slice(s.as_bytes()),
        Value::Bytes(b) => {
            out.push(b'[');
            for (i, byte) in b.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(itoa::Buffer::new().format(*byte).as_bytes());
            }
            out.push(b']');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                write_v(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.extend_from_slice(b"map[");
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(k.as_bytes());
                out.push(b':');
                write_v(out, item);
            }
            out.push(b']');
        }
    }
}

/// `%v` of a value as a `String`.
pub(crate) fn to_v_string(v: &Value) -> String {
    if let Value::String(s) = v {
        return s.to_string();
    }
    let mut out = Vec::new();
    write_v(&mut out, v);
    String::from_utf8(out).unwrap_or_default()
}

/// `fmt.Sprint`: a space between operands when neither is a string.
pub(crate) fn sprint<'v>(out: &mut Vec<u8>, args: impl IntoIterator<Item = &'v Value>) {
    let mut prev_string = false;
    for (i, a) in args.into_iter().enumerate() {
        let is_string = matches!(a, Value::String(_));
        if i > 0 && !is_string && !prev_string {
            out.push(b' ');
        }
        write_v(out, a);
        prev_string = is_string;
    }
}

/// `fmt.Sprintln`: spaces between all operands and a final newline.
pub(crate) fn sprintln<'v>(out: &mut Vec<u8>, args: impl IntoIterator<Item = &'v Value>) {
    for (i, a) in args.into_iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        write_v(out, a);
    }
    out.push(b'\n');
}

// ---------------------------------------------------------------------------------------------
// Floats

/// Decimal digits of a float: value = 0.d[0]d[1]... × 10^dp (no leading or trailing zeros).
/// Up to 32 digits live inline; more (only for large printf precisions) spill to `extra`.
struct Digits {
    buf: [u8; 32],
    extra: Vec<u8>,
    nd: usize,
    dp: i32,
    neg: bool,
}

impl Digits {
    fn digits(&self) -> &[u8] {
        if self.extra.is_empty() {
            &self.buf[..self.nd]
        } else {
            &self.extra[..self.nd]
        }
    }

    fn push(&mut self, b: u8) {
        if self.nd < self.buf.len() && self.extra.is_empty() {
            self.buf[self.nd] = b;
        } else {
            if self.extra.is_empty() {
                self.extra.extend_from_slice(&self.buf[..self.nd]);
            }
            self.extra.truncate(self.nd);
            self.extra.push(b);
        }
        self.nd += 1;
    }

    fn last(&self) -> Option<u8> {
        self.digits().last().copied()
    }

    /// Reads Rust's `{:e}`/ryu style text: `-1.2345e-7`, `123.5`, `1e21`.
    fn parse(text: &str) -> Self {
        let mut d = Self {
            buf: [0; 32],
            extra: Vec::new(),
            nd: 0,
            dp: 0,
            neg: false,
        };
        let text = match text.strip_prefix('-') {
            Some(rest) => {
                d.neg = true;
                rest
            }
            None => text,
        };
        let (mantissa, exp) = match text.split_once(['e', 'E']) {
            Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
            None => (text, 0),
        };
        let mut int_len = 0i32;
        let mut seen_point = false;
        let mut leading = true;
        for b in mantissa.bytes() {
            if b == b'.' {
                seen_point = true;
                continue;
            }
            if !seen_point {
                int_len += 1;
            }
            if leading && b == b'0' {
                // Leading zeros move the decimal point instead of being digits.
                int_len -= 1;
                continue;
            }
            leading = false;
            d.push(b);
        }
        while d.last() == Some(b'0') {
            d.nd -= 1;
        }
        d.dp = if d.nd == 0 { 0 } else { int_len + exp };
        d
    }
}

/// Appends `-d.ddde±dd` with `prec` digits after the point (Go's `fmtE`).
fn fmt_e(out: &mut Vec<u8>, d: &Digits, prec: usize, upper: bool) {
    if d.neg {
        out.push(b'-');
    }
    let digits = d.digits();
    out.push(digits.first().copied().unwrap_or(b'0'));
    if prec > 0 {
        out.push(b'.');
        let m = digits.len().min(prec + 1);
        if m > 1 {
            out.extend_from_slice(&digits[1..m]);
        }
        for _ in m.max(1)..=prec {
            out.push(b'0');
        }
    }
    out.push(if upper { b'E' } else { b'e' });
    let mut exp = if d.nd == 0 { 0 } else { d.dp - 1 };
    if exp < 0 {
        out.push(b'-');
        exp = -exp;
    } else {
        out.push(b'+');
    }
    if exp < 10 {
        out.push(b'0');
    }
    out.extend_from_slice(itoa::Buffer::new().format(exp).as_bytes());
}

/// Appends `-ddd.ddd` with `prec` digits after the point (Go's `fmtF`).
fn fmt_f(out: &mut Vec<u8>, d: &Digits, prec: usize) {
    if d.neg {
        out.push(b'-');
    }
    let digits = d.digits();
    if d.dp > 0 {
        let dp = d.dp as usize;
        let m = digits.len().min(dp);
        out.extend_from_slice(&digits[..m]);
        for _ in m..dp {
            out.push(b'0');
        }
    } else {
        out.push(b'0');
    }
    if prec > 0 {
        out.push(b'.');
        for i in 1..=prec as i64 {
            let j = i64::from(d.dp) + i - 1;
            let ch = usize::try_from(j)
                .ok()
                .and_then(|j| digits.get(j).copied())
                .unwrap_or(b'0');
            out.push(ch);
        }
    }
}

/// Shortest digits that read back as `f` (finite).
fn shortest(f: f64) -> Digits {
    let mut buf = ryu::Buffer::new();
    let mut d = Digits::parse(buf.format_finite(f));
    d.neg = f.is_sign_negative();
    d
}

/// `%v` of a float64 as `fmt.Print` writes it: Go's `%g` with the shortest digits, in
/// exponent form when the decimal exponent is below -4 or at least 6 (`1e-05`, `1e+06`).
pub(crate) fn write_float_v(out: &mut Vec<u8>, f: f64) {
    append_float(out, f, b'g', -1);
}

/// `strconv.AppendFloat(out, f, verb, prec, 64)` for verbs e E f F g G x X; `prec < 0` asks
/// for the shortest representation.
pub(crate) fn append_float(out: &mut Vec<u8>, f: f64, verb: u8, prec: i32) {
    if f.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if f.is_infinite() {
        out.extend_from_slice(if f > 0.0 { b"+Inf" } else { b"-Inf" });
        return;
    }
    if matches!(verb, b'x' | b'X') {
        hex_float(out, f, prec, verb == b'X');
        return;
    }
    let shortest_mode = prec < 0;
    let digs = if shortest_mode {
        shortest(f)
    } else {
        match verb {
            b'f' | b'F' => {
                // Rust's fixed formatting rounds the exact binary value half to even, as Go.
                out.extend_from_slice(format!("{:.*}", prec as usize, f).as_bytes());
                return;
            }
            b'e' | b'E' => {
                let text = format!("{:.*e}", prec as usize, f);
                let mut d = Digits::parse(&text);
                d.neg = f.is_sign_negative();
                d
            }
            _ => {
                let p = prec.max(1) as usize;
                let text = format!("{:.*e}", p - 1, f);
                let mut d = Digits::parse(&text);
                d.neg = f.is_sign_negative();
                d
            }
        }
    };
    let nd = digs.nd as i32;
    match verb {
        b'e' | b'E' => {
            let p = if shortest_mode { (nd - 1).max(0) } else { prec };
            fmt_e(out, &digs, p as usize, verb == b'E');
        }
        b'f' | b'F' => {
            let p = (nd - digs.dp).max(0);
            fmt_f(out, &digs, p as usize);
        }
        _ => {
            let mut p = if shortest_mode { nd } else { prec.max(1) };
            let mut eprec = p;
            if eprec > nd && nd >= digs.dp {
                eprec = nd;
            }
            if shortest_mode {
                eprec = 6;
            }
            let exp = digs.dp - 1;
            if exp < -4 || exp >= eprec {
                if p > nd {
                    p = nd;
                }
                fmt_e(out, &digs, (p - 1).max(0) as usize, verb == b'G');
            } else {
                if p > digs.dp {
                    p = nd;
                }
                fmt_f(out, &digs, (p - digs.dp).max(0) as usize);
            }
        }
    }
}

/// `%x` of a float: `0x1.8p+01`, rounded to `prec` hex digits when one is given (Go's `fmtX`).
fn hex_float(out: &mut Vec<u8>, f: f64, prec: i32, upper: bool) {
    let bits = f.to_bits();
    let raw_exp = ((bits >> 52) & 0x7ff) as i32;
    let mut mant = bits & ((1 << 52) - 1);
    let mut exp = if raw_exp == 0 {
        1 - 1023
    } else {
        mant |= 1 << 52;
        raw_exp - 1023
    };
    if mant == 0 {
        exp = 0;
    }
    // Put the leading 1 at bit 60.
    mant <<= 60 - 52;
    while mant != 0 && mant & (1 << 60) == 0 {
        mant <<= 1;
        exp -= 1;
    }
    if (0..15).contains(&prec) {
        let shift = (prec * 4) as u32;
        let extra = (mant << shift) & ((1 << 60) - 1);
        mant >>= 60 - shift;
        if extra | (mant & 1) > 1 << 59 {
            mant += 1;
        }
        mant <<= 60 - shift;
        if mant & (1 << 61) != 0 {
            mant >>= 1;
            exp += 1;
        }
    }
    let hex: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    if f.is_sign_negative() {
        out.push(b'-');
    }
    out.extend_from_slice(if upper { b"0X" } else { b"0x" });
    out.push(b'0' + ((mant >> 60) & 1) as u8);
    mant <<= 4;
    if prec < 0 && mant != 0 {
        out.push(b'.');
        while mant != 0 {
            out.push(hex[((mant >> 60) & 15) as usize]);
            mant <<= 4;
        }
    } else if prec > 0 {
        out.push(b'.');
        for _ in 0..prec {
            out.push(hex[((mant >> 60) & 15) as usize]);
            mant <<= 4;
        }
    }
    out.push(if upper { b'P' } else { b'p' });
    out.push(if exp < 0 { b'-' } else { b'+' });
    let e = exp.unsigned_abs();
    if e < 10 {
        out.push(b'0');
    }
    out.extend_from_slice(itoa::Buffer::new().format(e).as_bytes());
}

// ---------------------------------------------------------------------------------------------
// Quoting

/// Go's `unicode.IsPrint`, closely approximated: letters, marks, numbers, punctuation, symbols
/// and the ASCII space; not controls, other spaces, format characters or private use.
pub(crate) fn is_print(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = c as u32;
    let format_or_private = matches!(u,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0xE000..=0xF8FF
        | 0xFDD0..=0xFDEF | 0xE0000..=0xE007F | 0xF0000..=0x10FFFF);
    !format_or_private && (u & 0xFFFE) != 0xFFFE
}

/// Appends one escaped rune as `strconv.Quote` does (`quote` is `"` or `'`).
fn escape_rune(out: &mut Vec<u8>, c: char, quote: char, ascii_only: bool) {
    if c == quote || c == '\\' {
        out.push(b'\\');
        out.push(c as u8);
        return;
    }
    if (!ascii_only || c.is_ascii()) && is_print(c) {
        let mut buf = [0; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        return;
    }
    let simple: &[u8] = match c {
        '\x07' => b"\\a",
        '\x08' => b"\\b",
        '\x0c' => b"\\f",
        '\n' => b"\\n",
        '\r' => b"\\r",
        '\t' => b"\\t",
        '\x0b' => b"\\v",
        _ => b"",
    };
    if !simple.is_empty() {
        out.extend_from_slice(simple);
        return;
    }
    let u = c as u32;
    let text = if u < 0x20 || u == 0x7f {
        format!("\\x{u:02x}")
    } else if u < 0x10000 {
        format!("\\u{u:04x}")
    } else {
        format!("\\U{u:08x}")
    };
    out.extend_from_slice(text.as_bytes());
}

/// `strconv.Quote` (or `QuoteToASCII`).
pub(crate) fn quote_str(out: &mut Vec<u8>, s: &str, ascii_only: bool) {
    out.push(b'"');
    for c in s.chars() {
        escape_rune(out, c, '"', ascii_only);
    }
    out.push(b'"');
}

/// `strconv.QuoteRune`.
fn quote_rune(out: &mut Vec<u8>, c: char, ascii_only: bool) {
    out.push(b'\'');
    escape_rune(out, c, '\'', ascii_only);
    out.push(b'\'');
}

/// `strconv.CanBackquote`.
fn can_backquote(s: &str) -> bool {
    s.chars()
        .all(|c| c != '`' && c != '\u{FEFF}' && (c == '\t' || !(c < ' ' || c == '\x7f')))
}

// ---------------------------------------------------------------------------------------------
// Printf

/// The largest precision a verb takes (a larger one is cut to it): Go takes up to a million;
/// Rust's float formatting, which writes the digits, at most `u16::MAX` digits in all (the
/// precision and the one before the point of `%e`).
const MAX_PREC: usize = u16::MAX as usize - 1;

/// Flags, width and precision of one verb.
#[derive(Clone, Copy, Default)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
    /// `%#v`
    sharp_v: bool,
}

impl Spec {
    /// Pads `body` to the width with spaces (or zeros when asked and allowed).
    fn pad(&self, out: &mut Vec<u8>, body: &[u8], zero_ok: bool) {
        let Some(width) = self.width else {
            out.extend_from_slice(body);
            return;
        };
        let len = std::str::from_utf8(body).map_or(body.len(), |s| s.chars().count());
        let fill = width.saturating_sub(len);
        if fill == 0 {
            out.extend_from_slice(body);
        } else if self.minus {
            out.extend_from_slice(body);
            out.resize(out.len() + fill, b' ');
        } else {
            let byte = if self.zero && zero_ok { b'0' } else { b' ' };
            out.resize(out.len() + fill, byte);
            out.extend_from_slice(body);
        }
    }
}

/// `fmt.Sprintf(format, args...)`, including `*` widths and `[n]` argument indexes.
pub(crate) fn sprintf(out: &mut Vec<u8>, format: &str, args: &[Val<'_>]) {
    let bytes = format.as_bytes();
    let mut i = 0;
    let mut arg = 0;
    let mut reordered = false;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i] != b'%' {
            i += 1;
        }
        out.extend_from_slice(&bytes[start..i]);
        if i >= bytes.len() {
            break;
        }
        i += 1; // the '%'
        let mut spec = Spec::default();
        while i < bytes.len() {
            match bytes[i] {
                b'#' => spec.sharp = true,
                b'0' => spec.zero = !spec.minus,
                b'+' => spec.plus = true,
                b'-' => {
                    spec.minus = true;
                    spec.zero = false;
                }
                b' ' => spec.space = true,
                _ => break,
            }
            i += 1;
        }
        let mut good_index = true;
        // Width.
        arg_index(
            bytes,
            &mut i,
            &mut arg,
            &mut reordered,
            &mut good_index,
            args.len(),
        );
        if i < bytes.len() && bytes[i] == b'*' {
            i += 1;
            match args
                .get(arg)
                .and_then(|v| v.value().as_i64())
                .filter(|_| good_index)
            {
                Some(w) => {
                    if w < 0 {
                        spec.minus = true;
                        spec.zero = false;
                    }
                    spec.width = Some((w.unsigned_abs() as usize).min(1 << 20));
                }
                None => out.extend_from_slice(b"%!(BADWIDTH)"),
            }
            arg += 1;
        } else {
            let (n, next) = parse_num(bytes, i);
            spec.width = n;
            i = next;
        }
        // Precision.
        if i < bytes.len() && bytes[i] == b'.' {
            i += 1;
            arg_index(
                bytes,
                &mut i,
                &mut arg,
                &mut reordered,
                &mut good_index,
                args.len(),
            );
            if i < bytes.len() && bytes[i] == b'*' {
                i += 1;
                match args
                    .get(arg)
                    .and_then(|v| v.value().as_i64())
                    .filter(|_| good_index)
                {
                    Some(p) if p >= 0 => spec.prec = Some((p as usize).min(MAX_PREC)),
                    Some(_) => spec.prec = None,
                    None => out.extend_from_slice(b"%!(BADPREC)"),
                }
                arg += 1;
            } else {
                let (n, next) = parse_num(bytes, i);
                spec.prec = Some(n.unwrap_or(0).min(MAX_PREC));
                i = next;
            }
        }
        arg_index(
            bytes,
            &mut i,
            &mut arg,
            &mut reordered,
            &mut good_index,
            args.len(),
        );
        let Some(verb) = format[i..].chars().next() else {
            out.extend_from_slice(b"%!(NOVERB)");
            break;
        };
        i += verb.len_utf8();
        if verb == '%' {
            out.push(b'%');
            continue;
        }
        if !good_index {
            out.extend_from_slice(b"%!");
            push_char(out, verb);
            out.extend_from_slice(b"(BADINDEX)");
            continue;
        }
        if verb == 'v' {
            spec.sharp_v = spec.sharp;
            spec.sharp = false;
            spec.plus = false;
        }
        match args.get(arg) {
            None => {
                out.extend_from_slice(b"%!");
                push_char(out, verb);
                out.extend_from_slice(b"(MISSING)");
            }
            Some(v) => {
                arg += 1;
                print_arg(out, v.value(), verb, &spec, 0);
            }
        }
    }
    if !reordered && arg < args.len() {
        out.extend_from_slice(b"%!(EXTRA ");
        for (k, v) in args[arg..].iter().map(Val::value).enumerate() {
            if k > 0 {
                out.extend_from_slice(b", ");
            }
            if v.is_null() {
                out.extend_from_slice(b"<nil>");
            } else {
                out.extend_from_slice(go_type(v).as_bytes());
                out.push(b'=');
                print_arg(out, v, 'v', &Spec::default(), 0);
            }
        }
        out.push(b')');
    }
}

/// An explicit argument index `[n]` at `bytes[*i]`, which moves the argument cursor.
fn arg_index(
    bytes: &[u8],
    i: &mut usize,
    arg: &mut usize,
    reordered: &mut bool,
    good: &mut bool,
    nargs: usize,
) {
    if *i >= bytes.len() || bytes[*i] != b'[' {
        return;
    }
    *reordered = true;
    let Some(close) = bytes[*i..].iter().position(|&b| b == b']') else {
        *good = false;
        *i = bytes.len();
        return;
    };
    let digits = &bytes[*i + 1..*i + close];
    *i += close + 1;
    let n = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse::<usize>().ok());
    match n {
        Some(n) if n >= 1 && n <= nargs => *arg = n - 1,
        _ => *good = false,
    }
}

fn parse_num(bytes: &[u8], mut i: usize) -> (Option<usize>, usize) {
    let start = i;
    let mut n: usize = 0;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        n = n
            .saturating_mul(10)
            .saturating_add(usize::from(bytes[i] - b'0'));
        i += 1;
    }
    // Go refuses absurd widths; so do we, quietly.
    ((i > start).then_some(n.min(1 << 20)), i)
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut buf = [0; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// `%!verb(type=value)`.
fn bad_verb(out: &mut Vec<u8>, v: &Value, verb: char, spec: &Spec) {
    out.extend_from_slice(b"%!");
    push_char(out, verb);
    out.push(b'(');
    if v.is_null() {
        out.extend_from_slice(b"<nil>");
    } else {
        out.extend_from_slice(go_type(v).as_bytes());
        out.push(b'=');
        print_arg(out, v, 'v', spec, 0);
    }
    out.push(b')');
}

/// Formats one operand with one verb (Go's `printArg`/`printValue`).
fn print_arg(out: &mut Vec<u8>, v: &Value, verb: char, spec: &Spec, depth: usize) {
    if verb == 'T' {
        if v.is_null() {
            spec.pad(out, b"<nil>", true);
        } else {
            fmt_string(out, v, go_type(v), 's', spec);
        }
        return;
    }
    match v {
        // A nil inside a list or map prints bare, whatever the verb.
        Value::Null if depth > 0 => out.extend_from_slice(b"<nil>"),
        Value::Null if verb == 'v' => spec.pad(out, b"<nil>", true),
        Value::Null => bad_verb(out, v, verb, spec),
        Value::Bool(b) => match verb {
            't' | 'v' => spec.pad(out, if *b { b"true" } else { b"false" }, true),
            _ => bad_verb(out, v, verb, spec),
        },
        Value::Int(i) => fmt_int(out, v, *i, verb, spec),
        Value::Float(f) => fmt_float(out, v, *f, verb, spec),
        Value::String(s) => fmt_string(out, v, s, verb, spec),
        Value::Bytes(b) => match verb {
            's' | 'x' | 'X' | 'q' => {
                let s = String::from_utf8_lossy(b);
                fmt_string(out, v, &s, verb, spec);
            }
            _ => {
                out.push(b'[');
                for (k, byte) in b.iter().enumerate() {
                    if k > 0 {
                        out.push(b' ');
                    }
                    let item = Value::Int(i64::from(*byte));
                    print_arg(out, &item, verb, spec, depth + 1);
                }
                out.push(b']');
            }
        },
        Value::Array(items) => {
            out.push(b'[');
            for (k, item) in items.iter().enumerate() {
                if k > 0 {
                    out.push(b' ');
                }
                print_arg(out, item, verb, spec, depth + 1);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.extend_from_slice(b"map[");
            for (k, (key, item)) in map.iter().enumerate() {
                if k > 0 {
                    out.push(b' ');
                }
                print_arg(out, &Value::String(key.clone()), verb, spec, depth + 1);
                out.push(b':');
                print_arg(out, item, verb, spec, depth + 1);
            }
            out.push(b']');
        }
    }
}

fn fmt_string(out: &mut Vec<u8>, v: &Value, s: &str, verb: char, spec: &Spec) {
    let s = match spec.prec {
        Some(p) if verb != 'x' && verb != 'X' => match s.char_indices().nth(p) {
            Some((cut, _)) => &s[..cut],
            None => s,
        },
        _ => s,
    };
    match verb {
        'v' if spec.sharp_v => {
            let mut body = Vec::with_capacity(s.len() + 2);
            quote_str(&mut body, s, false);
            spec.pad(out, &body, true);
        }
        'v' | 's' => spec.pad(out, s.as_bytes(), true),
        'q' => {
            let mut body = Vec::with_capacity(s.len() + 2);
            if spec.sharp && can_backquote(s) {
                body.push(b'`');
                body.extend_from_slice(s.as_bytes());
                body.push(b'`');
            } else {
                quote_str(&mut body, s, spec.plus);
            }
            spec.pad(out, &body, true);
        }
        'x' | 'X' => {
            let bytes = match spec.prec {
                Some(p) => &s.as_bytes()[..p.min(s.len())],
                None => s.as_bytes(),
            };
            let mut body = Vec::with_capacity(bytes.len() * 3 + 2);
            for (k, b) in bytes.iter().enumerate() {
                if spec.space && k > 0 {
                    body.push(b' ');
                }
                if spec.sharp && (k == 0 || spec.space) {
                    body.extend_from_slice(if verb == 'x' { b"0x" } else { b"0X" });
                }
                let text = if verb == 'x' {
                    format!("{b:02x}")
                } else {
                    format!("{b:02X}")
                };
                body.extend_from_slice(text.as_bytes());
            }
            spec.pad(out, &body, true);
        }
        _ => bad_verb(out, v, verb, spec),
    }
}

fn fmt_int(out: &mut Vec<u8>, v: &Value, i: i64, verb: char, spec: &Spec) {
    let (base, upper) = match verb {
        'v' | 'd' => (10, false),
        'b' => (2, false),
        'o' | 'O' => (8, false),
        'x' => (16, false),
        'X' => (16, true),
        'c' => {
            let c = u32::try_from(i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            let mut buf = [0; 4];
            spec.pad(out, c.encode_utf8(&mut buf).as_bytes(), true);
            return;
        }
        'q' => {
            let c = u32::try_from(i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            let mut body = Vec::new();
            quote_rune(&mut body, c, spec.plus);
            spec.pad(out, &body, true);
            return;
        }
        'U' => {
            let min = spec.prec.unwrap_or(4).max(4);
            let mut body = format!("U+{:0min$X}", i as u64).into_bytes();
            if spec.sharp
                && let Some(c) = u32::try_from(i)
                    .ok()
                    .and_then(char::from_u32)
                    .filter(|c| is_print(*c))
            {
                body.extend_from_slice(b" '");
                push_char(&mut body, c);
                body.push(b'\'');
            }
            spec.pad(out, &body, false);
            return;
        }
        // Oort keeps whole JSON numbers as integers where eKuiper has float64s, so the float
        // verbs accept integers too.
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' => {
            fmt_float(out, v, i as f64, verb, spec);
            return;
        }
        _ => {
            bad_verb(out, v, verb, spec);
            return;
        }
    };
    let negative = i < 0;
    let mut u = i.unsigned_abs();
    let mut digits: Vec<u8> = Vec::with_capacity(24);
    let table: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    if u == 0 {
        digits.push(b'0');
    }
    while u > 0 {
        digits.push(table[(u % base) as usize]);
        u /= base;
    }
    // Minimum digits: from precision, or from width with the zero flag.
    let mut min_digits = 0;
    if let Some(p) = spec.prec {
        if p == 0 && i == 0 {
            spec.pad(out, b"", false);
            return;
        }
        min_digits = p;
    } else if spec.zero
        && !spec.minus
        && let Some(w) = spec.width
    {
        min_digits = w;
        if negative || spec.plus || spec.space {
            min_digits = min_digits.saturating_sub(1);
        }
    }
    while digits.len() < min_digits {
        digits.push(b'0');
    }
    if spec.sharp {
        match base {
            2 => digits.extend_from_slice(b"b0"),
            8 if digits.last() != Some(&b'0') => digits.push(b'0'),
            16 => digits.extend_from_slice(if upper { b"X0" } else { b"x0" }),
            _ => {}
        }
    }
    if verb == 'O' {
        digits.extend_from_slice(b"o0");
    }
    if negative {
        digits.push(b'-');
    } else if spec.plus {
        digits.push(b'+');
    } else if spec.space {
        digits.push(b' ');
    }
    digits.reverse();
    spec.pad(out, &digits, false);
}

fn fmt_float(out: &mut Vec<u8>, v: &Value, f: f64, verb: char, spec: &Spec) {
    let (conv, default_prec) = match verb {
        'v' => (b'g', -1),
        'g' | 'G' | 'x' | 'X' | 'b' => (verb as u8, -1),
        'e' | 'E' | 'f' | 'F' => (verb as u8, 6),
        // Whole floats print with %d, for the same reason integers take %f.
        'd' if f.fract() == 0.0 && f.abs() < 9.2e18 => {
            fmt_int(out, v, f as i64, 'd', spec);
            return;
        }
        _ => {
            bad_verb(out, v, verb, spec);
            return;
        }
    };
    let prec = spec.prec.map_or(default_prec, |p| p.min(MAX_PREC) as i32);
    let mut num = Vec::with_capacity(32);
    if conv == b'b' {
        binary_float(&mut num, f);
    } else {
        append_float(&mut num, f, conv, prec);
    }
    if spec.sharp && conv != b'b' && f.is_finite() {
        sharp_float(&mut num, conv, prec);
    }
    let (sign, body) = match num.first() {
        Some(b'-') => (Some(b'-'), &num[1..]),
        Some(b'+') => (Some(b'+'), &num[1..]),
        _ => (None, &num[..]),
    };
    if body.first().is_some_and(|b| matches!(b, b'I' | b'N')) {
        // Infinities and NaN are never zero padded; NaN shows a sign only when asked.
        let mut text = Vec::new();
        if body[0] == b'N' {
            if spec.plus {
                text.push(b'+');
            } else if spec.space {
                text.push(b' ');
            }
        } else {
            let s = sign.unwrap_or(b'+');
            text.push(if s == b'+' && spec.space && !spec.plus {
                b' '
            } else {
                s
            });
        }
        text.extend_from_slice(body);
        let mut no_zero = *spec;
        no_zero.zero = false;
        no_zero.pad(out, &text, false);
        return;
    }
    let sign = match sign {
        Some(b'-') => Some(b'-'),
        _ if spec.plus => Some(b'+'),
        _ if spec.space => Some(b' '),
        _ => None,
    };
    match sign {
        Some(s) if spec.zero && !spec.minus => {
            let width = spec.width.unwrap_or(0);
            out.push(s);
            let fill = width.saturating_sub(body.len() + 1);
            out.resize(out.len() + fill, b'0');
            out.extend_from_slice(body);
        }
        Some(s) => {
            let mut text = Vec::with_capacity(body.len() + 1);
            text.push(s);
            text.extend_from_slice(body);
            spec.pad(out, &text, true);
        }
        None => spec.pad(out, body, true),
    }
}

/// `%#e`, `%#f`, `%#g`: always a decimal point, and `%#g` keeps its trailing zeros.
fn sharp_float(num: &mut Vec<u8>, conv: u8, prec: i32) {
    // Go counts `%#x` but not `%#X` here.
    let mut digits: i32 = match conv {
        b'g' | b'G' | b'x' => {
            if prec < 0 {
                6
            } else {
                prec
            }
        }
        _ => 0,
    };
    let mut tail = Vec::new();
    let mut has_point = false;
    let mut saw_nonzero = false;
    let start = usize::from(matches!(num.first(), Some(b'-' | b'+')));
    let mut i = start;
    while i < num.len() {
        match num[i] {
            b'.' => has_point = true,
            b'p' | b'P' => {
                tail = num.split_off(i);
                break;
            }
            b'e' | b'E' if !matches!(conv, b'x' | b'X') => {
                tail = num.split_off(i);
                break;
            }
            c => {
                if c != b'0' {
                    saw_nonzero = true;
                }
                if saw_nonzero {
                    digits -= 1;
                }
            }
        }
        i += 1;
    }
    if !has_point {
        if num.len() == start + 1 && num[start] == b'0' {
            digits -= 1;
        }
        num.push(b'.');
    }
    while digits > 0 {
        num.push(b'0');
        digits -= 1;
    }
    num.extend_from_slice(&tail);
}

/// `%b` of a float: the binary mantissa and exponent, `4503599627370496p-52`.
fn binary_float(out: &mut Vec<u8>, f: f64) {
    let bits = f.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64;
    let mut mant = bits & ((1 << 52) - 1);
    let exp = if exp == 0 {
        -1074
    } else {
        mant |= 1 << 52;
        exp - 1075
    };
    if f.is_sign_negative() {
        out.push(b'-');
    }
    out.extend_from_slice(itoa::Buffer::new().format(mant).as_bytes());
    out.push(b'p');
    if exp >= 0 {
        out.push(b'+');
    }
    out.extend_from_slice(itoa::Buffer::new().format(exp).as_bytes());
}

// ---------------------------------------------------------------------------------------------
// Escapers used by the builtins

/// `template.HTMLEscapeString`.
pub(crate) fn html_escape(out: &mut Vec<u8>, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"&#34;"),
            '\'' => out.extend_from_slice(b"&#39;"),
            '&' => out.extend_from_slice(b"&amp;"),
            '<' => out.extend_from_slice(b"&lt;"),
            '>' => out.extend_from_slice(b"&gt;"),
            '\0' => out.extend_from_slice("\u{FFFD}".as_bytes()),
            c => push_char(out, c),
        }
    }
}

/// `template.JSEscapeString`.
pub(crate) fn js_escape(out: &mut Vec<u8>, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.extend_from_slice(b"\\\\"),
            '\'' => out.extend_from_slice(b"\\'"),
            '"' => out.extend_from_slice(b"\\\""),
            '<' => out.extend_from_slice(b"\\u003C"),
            '>' => out.extend_from_slice(b"\\u003E"),
            '&' => out.extend_from_slice(b"\\u0026"),
            '=' => out.extend_from_slice(b"\\u003D"),
            c if c < ' ' => out.extend_from_slice(format!("\\u{:04X}", c as u32).as_bytes()),
            c if c.is_ascii() || is_print(c) => push_char(out, c),
            c => out.extend_from_slice(format!("\\u{:04X}", c as u32).as_bytes()),
        }
    }
}

/// `url.QueryEscape`.
pub(crate) fn query_escape(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b),
            b' ' => out.push(b'+'),
            _ => out.extend_from_slice(format!("%{b:02X}").as_bytes()),
        }
    }
}
