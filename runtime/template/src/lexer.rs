//! Splits template text into tokens the way Go's `text/template/parse` lexer does.
//!
//! The whole input is tokenised up front. A lexical error stops the scan and becomes the last
//! token, so the parser reports it only if it gets that far without an earlier error, as Go does.

/// What a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tok {
    /// Plain text outside actions (its span already excludes trimmed spaces).
    Text,
    /// `{{`, with or without a trim marker.
    LeftDelim,
    /// `}}`, with or without a trim marker.
    RightDelim,
    /// Run of spaces inside an action.
    Space,
    /// A function name.
    Identifier,
    /// `.name`.
    Field,
    /// `$` or `$name`.
    Variable,
    /// `.` alone.
    Dot,
    /// `true` or `false`.
    Bool,
    /// `nil`.
    Nil,
    /// A double-quoted string.
    String,
    /// A back-quoted string.
    RawString,
    /// A character constant such as `'a'`.
    CharConst,
    /// A number, including complex-looking ones (rejected by the parser).
    Number,
    /// `|`.
    Pipe,
    /// `(`.
    LeftParen,
    /// `)`.
    RightParen,
    /// `=`.
    Assign,
    /// `:=`.
    Declare,
    /// Any other printable ASCII character, such as `,`.
    Char,
    /// Keyword `block`.
    Block,
    /// Keyword `break`.
    Break,
    /// Keyword `continue`.
    Continue,
    /// Keyword `define`.
    Define,
    /// Keyword `else`.
    Else,
    /// Keyword `end`.
    End,
    /// Keyword `if`.
    If,
    /// Keyword `range`.
    Range,
    /// Keyword `template`.
    Template,
    /// Keyword `with`.
    With,
    /// End of input.
    Eof,
    /// A lexical error; the message is in [`Lexed::error`].
    Error,
}

impl Tok {
    /// Keywords print as `<word>` in error messages, like Go.
    const fn is_keyword(self) -> bool {
        matches!(
            self,
            Self::Dot
                | Self::Nil
                | Self::Block
                | Self::Break
                | Self::Continue
                | Self::Define
                | Self::Else
                | Self::End
                | Self::If
                | Self::Range
                | Self::Template
                | Self::With
        )
    }
}

/// One token: its kind and byte span in the source.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Token {
    pub kind: Tok,
    pub start: usize,
    pub end: usize,
}

/// The token list, ending with `Eof` or `Error`.
pub(crate) struct Lexed {
    pub tokens: Vec<Token>,
    /// The message of the final `Error` token, if any.
    pub error: Option<String>,
}

/// Renders a token for an "unexpected ..." message, as Go's `item.String` does.
pub(crate) fn describe(src: &str, tok: &Token, error: Option<&str>) -> String {
    let text = &src[tok.start..tok.end];
    match tok.kind {
        Tok::Eof => "EOF".to_owned(),
        Tok::Error => error.unwrap_or("error").to_owned(),
        k if k.is_keyword() => format!("<{text}>"),
        _ if text.chars().count() > 10 => {
            let short: String = text.chars().take(10).collect();
            format!("{}...", go_quote(&short))
        }
        _ => go_quote(text),
    }
}

/// `%q` of a string, used in messages.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    super::format::quote_str(&mut out, s, false);
    String::from_utf8(out).unwrap_or_default()
}

/// `%#U` of a character: `U+002F '/'`.
fn char_desc(c: char) -> String {
    if c.is_control() {
        format!("U+{:04X}", c as u32)
    } else {
        format!("U+{:04X} '{c}'", c as u32)
    }
}

const fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphabetic() || c.is_numeric()
}

fn keyword(word: &str) -> Option<Tok> {
    Some(match word {
        "block" => Tok::Block,
        "break" => Tok::Break,
        "continue" => Tok::Continue,
        "define" => Tok::Define,
        "else" => Tok::Else,
        "end" => Tok::End,
        "if" => Tok::If,
        "range" => Tok::Range,
        "nil" => Tok::Nil,
        "template" => Tok::Template,
        "with" => Tok::With,
        _ => return None,
    })
}

struct Lexer<'s> {
    src: &'s str,
    pos: usize,
    start: usize,
    paren_depth: usize,
    tokens: Vec<Token>,
}

/// Tokenises a whole template.
pub(crate) fn lex(src: &str) -> Lexed {
    let mut lx = Lexer {
        src,
        pos: 0,
        start: 0,
        paren_depth: 0,
        tokens: Vec::new(),
    };
    let error = lx.run().err();
    Lexed {
        tokens: lx.tokens,
        error,
    }
}

type LexResult = Result<(), String>;

impl Lexer<'_> {
    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn next_char(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn emit(&mut self, kind: Tok) {
        self.tokens.push(Token {
            kind,
            start: self.start,
            end: self.pos,
        });
        self.start = self.pos;
    }

    /// Records an error token at the current token start and stops.
    fn fail(&mut self, msg: String) -> LexResult {
        self.tokens.push(Token {
            kind: Tok::Error,
            start: self.start,
            end: self.pos.max(self.start),
        });
        Err(msg)
    }

    fn run(&mut self) -> LexResult {
        loop {
            match self.rest().find("{{") {
                Some(x) => {
                    let delim = self.pos + x;
                    let mut text_end = delim;
                    if has_left_trim(&self.src[delim + 2..]) {
                        text_end = self.src[..delim].trim_end_matches(is_space).len();
                        text_end = text_end.max(self.start);
                    }
                    if text_end > self.start {
                        self.pos = text_end;
                        self.emit(Tok::Text);
                    }
                    self.pos = delim;
                    self.start = delim;
                    self.left_delim()?;
                }
                None => {
                    self.pos = self.src.len();
                    if self.pos > self.start {
                        self.emit(Tok::Text);
                    }
                    self.emit(Tok::Eof);
                    return Ok(());
                }
            }
        }
    }

    /// At `{{`: a comment, or an action up to and including its `}}`.
    fn left_delim(&mut self) -> LexResult {
        self.pos += 2;
        let trim = has_left_trim(self.rest());
        let after_marker = if trim { 2 } else { 0 };
        if self.src[self.pos + after_marker..].starts_with("/*") {
            self.pos += after_marker;
            self.start = self.pos;
            return self.comment();
        }
        self.emit(Tok::LeftDelim);
        self.pos += after_marker;
        self.start = self.pos;
        self.paren_depth = 0;
        self.inside_action()
    }

    fn comment(&mut self) -> LexResult {
        self.pos += 2;
        let Some(x) = self.rest().find("*/") else {
            return self.fail("unclosed comment".to_owned());
        };
        self.pos += x + 2;
        let Some(trim) = self.at_right_delim() else {
            return self.fail("comment ends before closing delimiter".to_owned());
        };
        self.pos += if trim { 4 } else { 2 };
        if trim {
            self.skip_leading_spaces();
        }
        self.start = self.pos;
        Ok(())
    }

    /// `Some(trim)` when at `}}` or ` -}}`.
    fn at_right_delim(&self) -> Option<bool> {
        let rest = self.rest();
        let b = rest.as_bytes();
        if b.len() >= 2 && is_space(b[0] as char) && b[1] == b'-' && rest[2..].starts_with("}}") {
            return Some(true);
        }
        rest.starts_with("}}").then_some(false)
    }

    fn skip_leading_spaces(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start_matches(is_space).len();
    }

    fn inside_action(&mut self) -> LexResult {
        loop {
            if let Some(trim) = self.at_right_delim() {
                if self.paren_depth != 0 {
                    return self.fail("unclosed left paren".to_owned());
                }
                if trim {
                    self.pos += 2;
                    self.start = self.pos;
                }
                self.pos += 2;
                self.emit(Tok::RightDelim);
                if trim {
                    self.skip_leading_spaces();
                    self.start = self.pos;
                }
                return Ok(());
            }
            let Some(c) = self.next_char() else {
                return self.fail("unclosed action".to_owned());
            };
            match c {
                c if is_space(c) => self.space(),
                '=' => self.emit(Tok::Assign),
                ':' => {
                    if self.next_char() != Some('=') {
                        return self.fail("expected :=".to_owned());
                    }
                    self.emit(Tok::Declare);
                }
                '|' => self.emit(Tok::Pipe),
                '"' => self.quote()?,
                '`' => self.raw_quote()?,
                '$' => self.field_or_variable(Tok::Variable)?,
                '\'' => self.char_const()?,
                '.' if !self.peek().is_some_and(|d| d.is_ascii_digit()) => {
                    self.field_or_variable(Tok::Field)?;
                }
                '.' | '+' | '-' | '0'..='9' => {
                    self.pos = self.start;
                    self.number()?;
                }
                c if is_alnum(c) => {
                    self.pos = self.start;
                    self.identifier()?;
                }
                '(' => {
                    self.paren_depth += 1;
                    self.emit(Tok::LeftParen);
                }
                ')' => {
                    // The parser usually reports a stray `)` first, as in Go.
                    self.emit(Tok::RightParen);
                    if self.paren_depth == 0 {
                        return self.fail("unexpected right paren U+0029 ')'".to_owned());
                    }
                    self.paren_depth -= 1;
                }
                c if c.is_ascii() && !c.is_ascii_control() => self.emit(Tok::Char),
                c => {
                    return self.fail(format!(
                        "unrecognized character in action: {}",
                        char_desc(c)
                    ));
                }
            }
        }
    }

    /// A run of spaces; a space that only precedes ` -}}` is not a token.
    fn space(&mut self) {
        // The first space is consumed already.
        let mut count = 1;
        while self.peek().is_some_and(is_space) {
            self.pos += 1;
            count += 1;
        }
        // Give back the last space if it belongs to a trim-marked closing delimiter.
        let before = self.pos - 1;
        let tail = &self.src[before..];
        if tail.len() >= 4 && tail.as_bytes()[1] == b'-' && tail[2..].starts_with("}}") {
            self.pos = before;
            if count == 1 {
                self.start = self.pos;
                return;
            }
        }
        self.emit(Tok::Space);
    }

    fn at_terminator(&self) -> bool {
        match self.peek() {
            None => true,
            Some(c) => {
                is_space(c)
                    || matches!(c, '.' | ',' | '|' | ':' | ')' | '(')
                    || self.rest().starts_with("}}")
            }
        }
    }

    /// After `.` or `$`: a field, a variable, or `.`/`$` alone.
    fn field_or_variable(&mut self, kind: Tok) -> LexResult {
        if self.at_terminator() {
            self.emit(if kind == Tok::Variable {
                Tok::Variable
            } else {
                Tok::Dot
            });
            return Ok(());
        }
        while self.peek().is_some_and(is_alnum) {
            self.next_char();
        }
        if !self.at_terminator() {
            let c = self.peek().unwrap_or(' ');
            return self.fail(format!("bad character {}", char_desc(c)));
        }
        self.emit(kind);
        Ok(())
    }

    fn identifier(&mut self) -> LexResult {
        while self.peek().is_some_and(is_alnum) {
            self.next_char();
        }
        if !self.at_terminator() {
            let c = self.peek().unwrap_or(' ');
            return self.fail(format!("bad character {}", char_desc(c)));
        }
        let word = &self.src[self.start..self.pos];
        let kind = match word {
            "true" | "false" => Tok::Bool,
            w => keyword(w).unwrap_or(Tok::Identifier),
        };
        self.emit(kind);
        Ok(())
    }

    fn accept(&mut self, set: &str) -> bool {
        match self.peek() {
            Some(c) if set.contains(c) => {
                self.pos += c.len_utf8();
                true
            }
            _ => false,
        }
    }

    fn accept_run(&mut self, set: &str) {
        while self.accept(set) {}
    }

    fn number(&mut self) -> LexResult {
        if !self.scan_number() {
            return self.bad_number();
        }
        if matches!(self.peek(), Some('+' | '-')) {
            // Only a complex constant such as 1+2i may continue with a sign.
            if !self.scan_number() || !self.src[..self.pos].ends_with('i') {
                return self.bad_number();
            }
        }
        self.emit(Tok::Number);
        Ok(())
    }

    fn bad_number(&mut self) -> LexResult {
        let text = &self.src[self.start..self.pos];
        let msg = format!("bad number syntax: {}", go_quote(text));
        self.fail(msg)
    }

    /// Scans one number; false when a letter or digit follows it directly.
    fn scan_number(&mut self) -> bool {
        self.accept("+-");
        let mut digits = "0123456789_";
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
            } else if self.accept("oO") {
                digits = "01234567_";
            } else if self.accept("bB") {
                digits = "01_";
            }
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if digits.len() == 11 && self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        if digits.len() == 23 && self.accept("pP") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        self.accept("i");
        if self.peek().is_some_and(is_alnum) {
            self.next_char();
            return false;
        }
        true
    }

    fn quote(&mut self) -> LexResult {
        loop {
            match self.next_char() {
                Some('\\') => match self.next_char() {
                    Some('\n') | None => {
                        return self.fail("unterminated quoted string".to_owned());
                    }
                    Some(_) => {}
                },
                Some('\n') | None => return self.fail("unterminated quoted string".to_owned()),
                Some('"') => break,
                Some(_) => {}
            }
        }
        self.emit(Tok::String);
        Ok(())
    }

    fn raw_quote(&mut self) -> LexResult {
        match self.rest().find('`') {
            Some(x) => {
                self.pos += x + 1;
                self.emit(Tok::RawString);
                Ok(())
            }
            None => {
                self.pos = self.src.len();
                self.fail("unterminated raw quoted string".to_owned())
            }
        }
    }

    fn char_const(&mut self) -> LexResult {
        loop {
            match self.next_char() {
                Some('\\') => match self.next_char() {
                    Some('\n') | None => {
                        return self.fail("unterminated character constant".to_owned());
                    }
                    Some(_) => {}
                },
                Some('\n') | None => {
                    return self.fail("unterminated character constant".to_owned());
                }
                Some('\'') => break,
                Some(_) => {}
            }
        }
        self.emit(Tok::CharConst);
        Ok(())
    }
}

/// `{{` followed by `-` and a space trims the text before it.
fn has_left_trim(after_delim: &str) -> bool {
    let b = after_delim.as_bytes();
    b.len() >= 2 && b[0] == b'-' && is_space(b[1] as char)
}
