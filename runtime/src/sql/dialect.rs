//! eKuiper's flavour of SQL for the parser: backquoted identifiers, strings in single or double
//! quotes, and `cast(x, "type")`-style calls where standard SQL has special syntax.

use sqlparser::ast::{Expr, Ident, ObjectName};
use sqlparser::dialect::Dialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

/// The dialect eKuiper rules are written in.
#[derive(Debug, Default, Clone, Copy)]
pub struct EkuiperDialect;

/// Keywords that standard SQL parses with special syntax (`CAST(x AS t)`, `TRIM(BOTH ...)`) but
/// that eKuiper treats as ordinary functions.
const PLAIN_FUNCTIONS: &[Keyword] = &[
    Keyword::CAST,
    Keyword::CEIL,
    Keyword::CEILING,
    Keyword::FLOOR,
    Keyword::TRIM,
    Keyword::SUBSTRING,
    Keyword::POSITION,
    Keyword::CONVERT,
    Keyword::EXTRACT,
    Keyword::OVERLAY,
    Keyword::LEFT,
    Keyword::RIGHT,
    Keyword::FORMAT,
    Keyword::REPLACE,
    Keyword::MOD,
    Keyword::LOG,
];

impl Dialect for EkuiperDialect {
    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_alphabetic() || ch == '_'
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_alphanumeric() || ch == '_'
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '`'
    }

    fn supports_string_literal_backslash_escape(&self) -> bool {
        true
    }

    fn supports_filter_during_aggregation(&self) -> bool {
        true
    }

    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        let token = parser.peek_token();
        let Token::Word(word) = &token.token else {
            return None;
        };
        if !PLAIN_FUNCTIONS.contains(&word.keyword)
            || parser.peek_nth_token(1).token != Token::LParen
        {
            return None;
        }
        let ident = Ident::with_span(token.span, word.value.clone());
        parser.next_token();
        Some(parser.parse_function(ObjectName::from(vec![ident])))
    }
}
