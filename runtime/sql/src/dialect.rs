//! eKuiper's flavour of SQL for the parser: backquoted identifiers, strings in single or double
//! quotes, and `cast(x, "type")`-style calls where standard SQL has special syntax.

use sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgOperator, FunctionArgumentList,
    FunctionArguments, Ident, InTarget, ObjectName, Statement,
};
use sqlparser::dialect::Dialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

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

    fn supports_select_wildcard_except(&self) -> bool {
        true
    }

    fn supports_select_wildcard_replace(&self) -> bool {
        true
    }

    /// eKuiper's `x [NOT] IN arr`, over an expression that gives an array (`IN (a, b)` is the
    /// parser's own): handed to the compiler as `IN UNNEST(arr)`.
    fn parse_infix(
        &self,
        parser: &mut Parser,
        expr: &Expr,
        _precedence: u8,
    ) -> Option<Result<Expr, ParserError>> {
        let is = |t: &Token, k: Keyword| matches!(t, Token::Word(w) if w.keyword == k);
        let (first, second, third) = (
            parser.peek_nth_token(0).token,
            parser.peek_nth_token(1).token,
            parser.peek_nth_token(2).token,
        );
        let negated = if is(&first, Keyword::IN) && second != Token::LParen {
            false
        } else if is(&first, Keyword::NOT) && is(&second, Keyword::IN) && third != Token::LParen {
            true
        } else {
            return None;
        };
        parser.next_token();
        if negated {
            parser.next_token();
        }
        let precedence = self.prec_value(sqlparser::dialect::Precedence::Between);
        Some(parser.parse_subexpr(precedence).map(|array| Expr::In {
            expr: Box::new(expr.clone()),
            target: InTarget::Unnest(Box::new(array)),
            negated,
            global: false,
        }))
    }

    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        let token = parser.peek_token();
        let Token::Word(word) = &token.token else {
            return None;
        };
        if WINDOWS.iter().any(|w| w.eq_ignore_ascii_case(&word.value))
            && parser.peek_nth_token(1).token == Token::LParen
        {
            let ident = Ident::with_span(token.span, word.value.clone());
            parser.next_token();
            return Some(parse_window(parser, ident));
        }
        // `count(* EXCEPT(a, b))`, also `collect` and `merge_agg`: the row without those fields.
        if STAR_EXCEPT
            .iter()
            .any(|w| w.eq_ignore_ascii_case(&word.value))
            && parser.peek_nth_token(1).token == Token::LParen
            && parser.peek_nth_token(2).token == Token::Mul
            && matches!(&parser.peek_nth_token(3).token,
                Token::Word(w) if w.keyword == Keyword::EXCEPT)
        {
            let ident = Ident::with_span(token.span, word.value.clone());
            parser.next_token();
            return Some(parse_star_except(parser, ident));
        }
        if ANALYTIC.iter().any(|w| w.eq_ignore_ascii_case(&word.value))
            && parser.peek_nth_token(1).token == Token::LParen
        {
            let ident = Ident::with_span(token.span, word.value.clone());
            parser.next_token();
            return Some(parse_analytic(parser, ident));
        }
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

/// The window functions of `GROUP BY`.
const WINDOWS: &[&str] = &[
    "tumblingwindow",
    "hoppingwindow",
    "slidingwindow",
    "sessionwindow",
    "countwindow",
    "statewindow",
];

/// The analytic functions, which take `OVER ([PARTITION BY e, ...] [WHEN cond])`.
const ANALYTIC: &[&str] = &[
    "lag",
    "latest",
    "changed_col",
    "had_changed",
    "acc_sum",
    "acc_min",
    "acc_max",
    "acc_count",
    "acc_avg",
];

/// The name under which each `PARTITION BY` expression of an analytic function's `OVER` is
/// handed to the compiler (as a named argument, like [`OVER_WHEN_ARG`]).
pub const PARTITION_ARG: &str = "__partition_by";

/// The name under which `OVER (WHEN cond)` of a window is handed to the compiler: standard SQL
/// has no such clause, so it travels as a named argument of the window function.
pub const OVER_WHEN_ARG: &str = "__over_when";

/// The aggregates that take `* EXCEPT(names)` as their argument.
const STAR_EXCEPT: &[&str] = &["count", "collect", "merge_agg"];

/// The name under which each field of `f(* EXCEPT(a, b))` is handed to the compiler (as a
/// named argument, beside the `*`).
pub const EXCEPT_ARG: &str = "__except";

/// `(* EXCEPT(a, b))` after the name of an aggregate.
fn parse_star_except(parser: &mut Parser, name: Ident) -> Result<Expr, ParserError> {
    parser.expect_token(&Token::LParen)?;
    parser.expect_token(&Token::Mul)?;
    parser.expect_keyword(Keyword::EXCEPT)?;
    parser.expect_token(&Token::LParen)?;
    let names = parser.parse_comma_separated(|p| p.parse_identifier())?;
    parser.expect_token(&Token::RParen)?;
    parser.expect_token(&Token::RParen)?;
    let mut args = vec![FunctionArg::Unnamed(FunctionArgExpr::Wildcard)];
    args.extend(names.into_iter().map(|n| FunctionArg::Named {
        name: Ident::new(EXCEPT_ARG),
        arg: FunctionArgExpr::Expr(Expr::Identifier(n)),
        operator: FunctionArgOperator::Equals,
    }));
    Ok(call(name, args))
}

/// `name(args) [OVER ([PARTITION BY e, ...] [WHEN cond])]`, after the name.
fn parse_analytic(parser: &mut Parser, name: Ident) -> Result<Expr, ParserError> {
    parser.expect_token(&Token::LParen)?;
    let mut args: Vec<FunctionArg> = if parser.consume_token(&Token::RParen) {
        Vec::new()
    } else {
        // `*` stands for the whole row (eKuiper's `changed_col(true, *)`).
        let args = parser.parse_comma_separated(|p| {
            Ok(if p.consume_token(&Token::Mul) {
                FunctionArgExpr::Wildcard
            } else {
                FunctionArgExpr::Expr(p.parse_expr()?)
            })
        })?;
        parser.expect_token(&Token::RParen)?;
        args.into_iter().map(FunctionArg::Unnamed).collect()
    };
    if parser.parse_keyword(Keyword::OVER) {
        parser.expect_token(&Token::LParen)?;
        if parser.parse_keywords(&[Keyword::PARTITION, Keyword::BY]) {
            for e in parser.parse_comma_separated(Parser::parse_expr)? {
                args.push(FunctionArg::Named {
                    name: Ident::new(PARTITION_ARG),
                    arg: FunctionArgExpr::Expr(e),
                    operator: FunctionArgOperator::Equals,
                });
            }
        }
        if parser.parse_keyword(Keyword::WHEN) {
            args.push(FunctionArg::Named {
                name: Ident::new(OVER_WHEN_ARG),
                arg: FunctionArgExpr::Expr(parser.parse_expr()?),
                operator: FunctionArgOperator::Equals,
            });
        }
        parser.expect_token(&Token::RParen)?;
    }
    Ok(call(name, args))
}

/// `NAMEWINDOW(args) [FILTER (WHERE cond)] [OVER ([PARTITION BY e, ...] [WHEN cond])]`, after
/// the name.
fn parse_window(parser: &mut Parser, name: Ident) -> Result<Expr, ParserError> {
    parser.expect_token(&Token::LParen)?;
    let mut args: Vec<FunctionArg> = if parser.consume_token(&Token::RParen) {
        Vec::new()
    } else {
        let args = parser.parse_comma_separated(Parser::parse_expr)?;
        parser.expect_token(&Token::RParen)?;
        args.into_iter()
            .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
            .collect()
    };
    let mut filter = None;
    let mut over_when = None;
    let mut partition = Vec::new();
    let mut over = false;
    loop {
        if filter.is_none() && parser.parse_keyword(Keyword::FILTER) {
            parser.expect_token(&Token::LParen)?;
            parser.expect_keyword(Keyword::WHERE)?;
            filter = Some(Box::new(parser.parse_expr()?));
            parser.expect_token(&Token::RParen)?;
        } else if !over && parser.parse_keyword(Keyword::OVER) {
            over = true;
            parser.expect_token(&Token::LParen)?;
            if parser.parse_keywords(&[Keyword::PARTITION, Keyword::BY]) {
                partition = parser.parse_comma_separated(Parser::parse_expr)?;
                if parser.parse_keyword(Keyword::WHEN) {
                    over_when = Some(parser.parse_expr()?);
                }
            } else {
                parser.expect_keyword(Keyword::WHEN)?;
                over_when = Some(parser.parse_expr()?);
            }
            parser.expect_token(&Token::RParen)?;
        } else {
            break;
        }
    }
    for e in partition {
        args.push(FunctionArg::Named {
            name: Ident::new(PARTITION_ARG),
            arg: FunctionArgExpr::Expr(e),
            operator: FunctionArgOperator::Equals,
        });
    }
    if let Some(cond) = over_when {
        args.push(FunctionArg::Named {
            name: Ident::new(OVER_WHEN_ARG),
            arg: FunctionArgExpr::Expr(cond),
            operator: FunctionArgOperator::Equals,
        });
    }
    Ok(Expr::Function(Function {
        name: ObjectName::from(vec![name]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args,
            clauses: Vec::new(),
        }),
        within_group: Vec::new(),
        filter,
        null_treatment: None,
        over: None,
    }))
}

/// Parses `sql` in eKuiper's dialect, with eKuiper's `INVISIBLE` after a SELECT item
/// (`expr [AS alias] INVISIBLE`: computed, usable by name in later items and clauses, not sent).
///
/// sqlparser's select-item parser has no place for a word after the alias, so the statement's
/// tokens are read first: each `INVISIBLE` that ends an item of the top-level SELECT list is
/// taken out and the item's index noted, and the rest is parsed as it is. The tokens keep their
/// positions in the text, so errors still point into the statement as written.
pub fn parse_with_invisible(sql: &str) -> Result<(Vec<Statement>, Vec<usize>), ParserError> {
    let tokens = Tokenizer::new(&EkuiperDialect, sql)
        .with_unescape(true)
        .tokenize_with_location()?;
    let (mut tokens, invisible) = take_invisible(&tokens);
    plain_all(&mut tokens);
    let statements = Parser::new(&EkuiperDialect)
        .with_tokens_with_locations(tokens)
        .parse_statements()?;
    Ok((statements, invisible))
}

/// eKuiper's SQL has no `ALL` (`SELECT ALL`, `UNION ALL`): `all` is a name there, as a field
/// (`SELECT all[0] FROM s`). The word is made a plain identifier before the parser sees it.
fn plain_all(tokens: &mut [TokenWithSpan]) {
    for t in tokens {
        if let Token::Word(w) = &mut t.token
            && w.keyword == Keyword::ALL
            && w.quote_style.is_none()
        {
            w.keyword = Keyword::NoKeyword;
        }
    }
}

/// Removes the `INVISIBLE` words that end an item of the first statement's SELECT list and
/// returns the indexes of those items.
fn take_invisible(tokens: &[TokenWithSpan]) -> (Vec<TokenWithSpan>, Vec<usize>) {
    let is_word = |t: &Token, kw: Keyword| matches!(t, Token::Word(w) if w.keyword == kw && w.quote_style.is_none());
    let mut out = Vec::with_capacity(tokens.len());
    let mut invisible = Vec::new();
    // Where the SELECT list is: before its SELECT, inside it, after its FROM.
    let mut in_list = false;
    let mut seen_select = false;
    let mut depth = 0usize;
    let mut item = 0usize;
    // The last token that is not whitespace, kept so far.
    let mut previous: Option<Token> = None;
    let next_token = |from: usize| {
        tokens[from..]
            .iter()
            .map(|n| &n.token)
            .find(|n| !matches!(n, Token::Whitespace(_)))
    };
    for (i, t) in tokens.iter().enumerate() {
        if matches!(t.token, Token::Whitespace(_)) {
            out.push(t.clone());
            continue;
        }
        match &t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth == 0 && !seen_select && is_word(&t.token, Keyword::SELECT) {
            seen_select = true;
            in_list = true;
        } else if in_list && depth == 0 {
            if is_word(&t.token, Keyword::FROM) || t.token == Token::SemiColon {
                in_list = false;
            } else if t.token == Token::Comma {
                item += 1;
            } else if is_word(&t.token, Keyword::INVISIBLE) {
                // It ends an item when an expression comes before it (not SELECT or a comma)
                // and the item ends after it.
                let after_expr = !matches!(&previous, Some(p) if *p == Token::Comma || is_word(p, Keyword::SELECT));
                let ends_item = match next_token(i + 1) {
                    None | Some(Token::EOF | Token::Comma | Token::SemiColon) => true,
                    Some(n) => is_word(n, Keyword::FROM),
                };
                if after_expr && ends_item {
                    if invisible.last() != Some(&item) {
                        invisible.push(item);
                    }
                    continue;
                }
            }
        }
        previous = Some(t.token.clone());
        out.push(t.clone());
    }
    (out, invisible)
}

/// A plain call `name(args)`, as the parser's own function calls are shaped.
fn call(name: Ident, args: Vec<FunctionArg>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![name]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args,
            clauses: Vec::new(),
        }),
        within_group: Vec::new(),
        filter: None,
        null_treatment: None,
        over: None,
    })
}
