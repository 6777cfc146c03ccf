//! The parser for `CREATE STREAM` / `CREATE TABLE` statements (eKuiper's DDL), on top of
//! sqlparser's tokenizer so positions are reported the same way as for queries.

use std::path::Path;
use std::sync::Arc;

use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use super::schema::{ColumnDef, DataType};
use super::{FileType, Format, SourceType, StreamDef, StreamKind, StreamOptions};
use crate::EkuiperDialect;

/// A stream definition is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: line {line}, column {column}: {message}")]
pub struct DdlError {
    /// The file (or other origin) of the definitions.
    pub origin: String,
    /// Line of the error.
    pub line: u64,
    /// Column of the error.
    pub column: u64,
    /// What is wrong.
    pub message: String,
}

/// Parses every `CREATE STREAM` / `CREATE TABLE` statement in `text` (separated by `;`).
/// `origin` names the text in errors; `base_dir` is where relative paths start.
pub fn parse_streams(
    text: &str,
    origin: &str,
    base_dir: &Path,
) -> Result<Vec<StreamDef>, DdlError> {
    let tokens = Tokenizer::new(&EkuiperDialect, text)
        .tokenize_with_location()
        .map_err(|e| DdlError {
            origin: origin.to_string(),
            line: e.location.line,
            column: e.location.column,
            message: e.message,
        })?
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect::<Vec<_>>();
    let mut parser = DdlParser {
        tokens,
        pos: 0,
        origin,
        base_dir,
    };
    let mut out = Vec::new();
    loop {
        while parser.eat(&Token::SemiColon) {}
        if parser.peek().is_none() {
            break;
        }
        let def = parser.statement()?;
        if out.iter().any(|d: &StreamDef| d.name == def.name) {
            return Err(parser.error_at(
                parser.last_location(),
                format!("stream `{}` is defined twice", def.name),
            ));
        }
        out.push(def);
    }
    Ok(out)
}

struct DdlParser<'a> {
    tokens: Vec<TokenWithSpan>,
    pos: usize,
    origin: &'a str,
    base_dir: &'a Path,
}

impl DdlParser<'_> {
    fn peek(&self) -> Option<&TokenWithSpan> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<TokenWithSpan> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn eat(&mut self, token: &Token) -> bool {
        if self.peek().is_some_and(|t| &t.token == token) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn last_location(&self) -> Location {
        self.tokens
            .get(self.pos.saturating_sub(1))
            .map(|t| t.span.start)
            .unwrap_or(Location { line: 0, column: 0 })
    }

    fn here(&self) -> Location {
        match self.peek() {
            Some(t) => t.span.start,
            None => self
                .tokens
                .last()
                .map(|t| t.span.end)
                .unwrap_or(Location { line: 1, column: 1 }),
        }
    }

    fn error_at(&self, at: Location, message: impl Into<String>) -> DdlError {
        DdlError {
            origin: self.origin.to_string(),
            line: at.line,
            column: at.column,
            message: message.into(),
        }
    }

    fn found(&self) -> String {
        match self.peek() {
            Some(t) => format!("`{}`", t.token),
            None => "the end".to_string(),
        }
    }

    fn expect(&mut self, token: &Token, what: &str) -> Result<(), DdlError> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.error_at(
                self.here(),
                format!("expected {what}, found {}", self.found()),
            ))
        }
    }

    fn keyword(&mut self, word: &str) -> bool {
        match self.peek() {
            Some(TokenWithSpan {
                token: Token::Word(w),
                ..
            }) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word) => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    fn ident(&mut self, what: &str) -> Result<(String, Location), DdlError> {
        match self.peek() {
            Some(TokenWithSpan {
                token: Token::Word(w),
                span,
            }) => {
                let out = (w.value.clone(), span.start);
                self.pos += 1;
                Ok(out)
            }
            _ => Err(self.error_at(
                self.here(),
                format!("expected {what}, found {}", self.found()),
            )),
        }
    }

    fn statement(&mut self) -> Result<StreamDef, DdlError> {
        let start = self.here();
        if !self.keyword("CREATE") {
            return Err(self.error_at(
                start,
                format!(
                    "expected CREATE STREAM or CREATE TABLE, found {}",
                    self.found()
                ),
            ));
        }
        let kind = if self.keyword("STREAM") {
            StreamKind::Stream
        } else if self.keyword("TABLE") {
            StreamKind::Table
        } else {
            return Err(self.error_at(
                self.here(),
                format!(
                    "expected STREAM or TABLE after CREATE, found {}",
                    self.found()
                ),
            ));
        };
        let (name, _) = self.ident("the stream's name")?;
        self.expect(
            &Token::LParen,
            "`(` opening the column list (use `()` for a schemaless stream)",
        )?;
        let columns = self.columns()?;
        if !self.keyword("WITH") {
            return Err(self.error_at(
                self.here(),
                format!("expected WITH (...) options, found {}", self.found()),
            ));
        }
        let options = self.options()?;
        if !self.eat(&Token::SemiColon) && self.peek().is_some() {
            return Err(self.error_at(
                self.here(),
                format!("expected `;` between statements, found {}", self.found()),
            ));
        }
        Ok(StreamDef {
            name: Arc::from(name.as_str()),
            kind,
            columns,
            options,
            base_dir: self.base_dir.to_owned(),
            origin: format!("{}:{}", self.origin, start.line),
        })
    }

    /// The column list after `(`, through `)`. Empty means schemaless.
    fn columns(&mut self) -> Result<Option<Vec<ColumnDef>>, DdlError> {
        if self.eat(&Token::RParen) {
            return Ok(None);
        }
        let mut columns: Vec<ColumnDef> = Vec::new();
        loop {
            let (name, at) = self.ident("a column name")?;
            if columns.iter().any(|c| c.name.eq_ignore_ascii_case(&name)) {
                return Err(self.error_at(at, format!("column `{name}` is declared twice")));
            }
            let ty = self.data_type()?;
            columns.push(ColumnDef { name, ty });
            if self.eat(&Token::Comma) {
                continue;
            }
            self.expect(&Token::RParen, "`,` or `)` in the column list")?;
            return Ok(Some(columns));
        }
    }

    fn data_type(&mut self) -> Result<DataType, DdlError> {
        let at = self.here();
        let (word, _) = self.ident("a column type")?;
        Ok(match word.to_ascii_lowercase().as_str() {
            "bigint" => DataType::Bigint,
            "float" => DataType::Float,
            "string" => DataType::String,
            "datetime" => DataType::Datetime,
            "boolean" => DataType::Boolean,
            "bytea" => DataType::Bytea,
            "array" => {
                self.expect(&Token::LParen, "`(` after ARRAY")?;
                let inner = self.data_type()?;
                self.expect(&Token::RParen, "`)` closing ARRAY(...)")?;
                DataType::Array(Box::new(inner))
            }
            "struct" => {
                self.expect(&Token::LParen, "`(` after STRUCT")?;
                let fields = self.columns()?.unwrap_or_default();
                DataType::Struct(fields)
            }
            _ => {
                return Err(self.error_at(
                    at,
                    format!(
                        "unknown column type `{word}` (expected bigint, float, string, datetime, \
                         boolean, bytea, array(...) or struct(...))"
                    ),
                ));
            }
        })
    }

    fn options(&mut self) -> Result<StreamOptions, DdlError> {
        self.expect(&Token::LParen, "`(` after WITH")?;
        let mut raw: Vec<(String, String, Location)> = Vec::new();
        loop {
            let (key, at) = self.ident("an option name such as DATASOURCE")?;
            self.expect(&Token::Eq, "`=` after the option name")?;
            let value = match self.next().map(|t| t.token) {
                Some(Token::DoubleQuotedString(s) | Token::SingleQuotedString(s)) => s,
                Some(Token::Number(n, _)) => n,
                Some(Token::Word(w)) if w.quote_style.is_none() => w.value,
                _ => {
                    self.pos -= 1;
                    return Err(self.error_at(
                        self.here(),
                        format!(
                            "expected a value for {key} (a quoted string), found {}",
                            self.found()
                        ),
                    ));
                }
            };
            let key = key.to_ascii_uppercase();
            if raw.iter().any(|(k, _, _)| *k == key) {
                return Err(self.error_at(at, format!("option {key} is given twice")));
            }
            raw.push((key, value, at));
            if self.eat(&Token::Comma) {
                continue;
            }
            self.expect(&Token::RParen, "`,` or `)` in the WITH options")?;
            break;
        }
        self.build_options(raw)
    }

    fn build_options(
        &self,
        raw: Vec<(String, String, Location)>,
    ) -> Result<StreamOptions, DdlError> {
        let mut options = StreamOptions {
            source_type: SourceType::Mqtt,
            datasource: String::new(),
            format: Format::Json,
            delimiter: b',',
            file_type: None,
            timestamp: None,
            timestamp_format: None,
            key: None,
            conf_key: None,
            shared: None,
            strict_validation: false,
            retain_size: None,
            lookup: false,
        };
        let mut has_datasource = false;
        for (key, value, at) in raw {
            let bad = |what: &str| self.error_at(at, format!("{key}=\"{value}\": {what}"));
            let boolean = |v: &str| match v.to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(bad("expected true or false")),
            };
            match key.as_str() {
                "TYPE" => {
                    options.source_type = match value.to_ascii_lowercase().as_str() {
                        "file" => SourceType::File,
                        "stdin" => SourceType::Stdin,
                        "memory" => SourceType::Memory,
                        "mqtt" => SourceType::Mqtt,
                        "redis" => SourceType::Redis,
                        _ => {
                            return Err(bad(
                                "unknown source type (expected file, stdin, memory, mqtt or redis)",
                            ));
                        }
                    }
                }
                "DATASOURCE" => {
                    options.datasource = value;
                    has_datasource = true;
                }
                "FORMAT" => {
                    options.format = match value.to_ascii_lowercase().as_str() {
                        "json" => Format::Json,
                        "delimited" => Format::Delimited,
                        "binary" => Format::Binary,
                        _ => {
                            return Err(bad(
                                "unsupported format (expected json, delimited or binary)",
                            ));
                        }
                    }
                }
                "DELIMITER" => {
                    options.delimiter = match value.as_bytes() {
                        [b] => *b,
                        _ => return Err(bad("the delimiter must be one ASCII character")),
                    }
                }
                "FILETYPE" => {
                    options.file_type = Some(match value.to_ascii_lowercase().as_str() {
                        "json" => FileType::Json,
                        "lines" => FileType::Lines,
                        "csv" => FileType::Csv,
                        _ => return Err(bad("expected json, lines or csv")),
                    })
                }
                "TIMESTAMP" => options.timestamp = Some(value),
                "TIMESTAMP_FORMAT" => options.timestamp_format = Some(value),
                "KEY" => options.key = Some(value),
                "CONF_KEY" => options.conf_key = Some(value),
                "SHARED" => options.shared = Some(boolean(&value)?),
                "STRICT_VALIDATION" => options.strict_validation = boolean(&value)?,
                "RETAIN_SIZE" => {
                    options.retain_size = Some(value.parse().map_err(|_| bad("expected a count"))?)
                }
                "KIND" if value.eq_ignore_ascii_case("scan") => options.lookup = false,
                "KIND" if value.eq_ignore_ascii_case("lookup") => options.lookup = true,
                "KIND" => return Err(bad("expected scan or lookup")),
                "SCHEMAID" => {
                    return Err(bad("not supported by this version"));
                }
                _ => {
                    return Err(self.error_at(
                        at,
                        format!(
                            "unknown option {key} (expected DATASOURCE, TYPE, FORMAT, DELIMITER, \
                             FILETYPE, TIMESTAMP, TIMESTAMP_FORMAT, KEY, CONF_KEY, SHARED, \
                             STRICT_VALIDATION, RETAIN_SIZE or KIND)"
                        ),
                    ));
                }
            }
        }
        if !has_datasource && options.source_type != SourceType::Stdin {
            return Err(self.error_at(
                self.last_location(),
                "DATASOURCE is required (the file, topic or memory topic to read)",
            ));
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<StreamDef>, DdlError> {
        parse_streams(text, "streams.sql", Path::new("/base"))
    }

    #[test]
    fn parses_streams_with_columns_and_options() {
        let defs = parse(
            "-- devices\nCREATE STREAM demo (temperature FLOAT, id BIGINT, tags ARRAY(STRING), \
             loc STRUCT(lat FLOAT, lng FLOAT)) WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\", \
             FORMAT=\"json\", TIMESTAMP=\"ts\");\nCREATE TABLE t () WITH (DATASOURCE='t.json', TYPE='file')",
        )
        .unwrap();
        assert_eq!(defs.len(), 2);
        let demo = &defs[0];
        assert_eq!(&*demo.name, "demo");
        assert_eq!(demo.columns.as_ref().unwrap().len(), 4);
        assert_eq!(demo.options.source_type, SourceType::File);
        assert_eq!(demo.options.timestamp.as_deref(), Some("ts"));
        assert_eq!(demo.datasource_path(), Path::new("/base/in.jsonl"));
        assert_eq!(demo.file_type(), FileType::Lines);
        assert_eq!(defs[1].kind, StreamKind::Table);
        assert!(defs[1].columns.is_none());
        assert_eq!(defs[1].file_type(), FileType::Json);
    }

    #[test]
    fn errors_name_the_position() {
        let err = parse("CREATE STREAM demo (a FLOT) WITH (DATASOURCE=\"x\")").unwrap_err();
        assert_eq!((err.line, err.column), (1, 23), "{err}");
        assert!(err.message.contains("unknown column type `FLOT`"), "{err}");
        let err = parse("CREATE STREAM demo () WITH (DATASORCE=\"x\")").unwrap_err();
        assert!(err.message.contains("unknown option DATASORCE"), "{err}");
        let err = parse("CREATE STREAM demo () WITH (TYPE=\"file\")").unwrap_err();
        assert!(err.message.contains("DATASOURCE is required"), "{err}");
        let err = parse("CREATE STREAM a () WITH (DATASOURCE=\"x\");\nCREATE STREAM a () WITH (DATASOURCE=\"y\")")
            .unwrap_err();
        assert!(err.message.contains("defined twice"), "{err}");
        let err =
            parse("CREATE STREAM a () WITH (DATASOURCE=\"x\", FORMAT=\"protobuf\")").unwrap_err();
        assert!(
            err.message
                .contains("unsupported format (expected json, delimited or binary)"),
            "{err}"
        );
    }

    #[test]
    fn a_table_is_a_scan_table_or_a_lookup_table() {
        let defs = parse(
            "CREATE TABLE t () WITH (DATASOURCE=\"t\", TYPE=\"mqtt\", KIND=\"scan\", \
             RETAIN_SIZE=\"3\")",
        )
        .unwrap();
        assert_eq!(defs[0].options.retain_size, Some(3));
        assert!(!defs[0].options.lookup);
        let defs = parse(
            "CREATE TABLE t () WITH (DATASOURCE=\"t\", TYPE=\"memory\", KIND=\"LOOKUP\", KEY=\"id\")",
        )
        .unwrap();
        assert!(defs[0].options.lookup);
        let err = parse("CREATE TABLE t () WITH (DATASOURCE=\"t\", KIND=\"batch\")").unwrap_err();
        assert!(err.message.contains("expected scan or lookup"), "{err}");
    }

    #[test]
    fn binary_is_a_format() {
        let defs =
            parse("CREATE STREAM b () WITH (DATASOURCE=\"img\", FORMAT=\"BINARY\")").unwrap();
        assert_eq!(defs[0].options.format, Format::Binary);
    }
}
