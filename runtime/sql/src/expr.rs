//! Compiled SQL expressions and their evaluation over one row, with eKuiper's semantics:
//! comparisons with `NULL` are false, arithmetic with `NULL` is `NULL`, `bigint` and `float`
//! mix, and a type mismatch is an error for that row (never a silent wrong answer).

use std::cell::RefCell;
use std::sync::Arc;

use crate::functions::{FnCtx, ScalarDef};
use crate::value::{Row, Schema, Value};

/// Evaluating an expression failed for one row.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    /// What went wrong, in Oort's words (logs, counters).
    message: String,
    /// The same in eKuiper's words, when they differ: what `sendError` sends.
    sent: Option<String>,
    /// Where among the messages of the call that produced it the error came.
    place: usize,
}

impl EvalError {
    /// An error whose text is the same in logs and in the message sent.
    pub fn new(message: String) -> Self {
        Self {
            message,
            sent: None,
            place: 0,
        }
    }

    /// An error that eKuiper words as `sent`.
    pub(crate) fn worded(message: String, sent: String) -> Self {
        Self {
            message,
            sent: Some(sent),
            place: 0,
        }
    }

    /// Oort's text.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The text a rule sends to its actions under `sendError`: eKuiper's.
    pub fn sent(&self) -> &str {
        self.sent.as_deref().unwrap_or(&self.message)
    }

    /// The error as eKuiper's operator that met it reports it (`run Where error: ...`).
    pub(crate) fn within(mut self, prefix: &str) -> Self {
        self.sent = Some(format!("{prefix}{}", self.sent()));
        self
    }

    /// The error as eKuiper's `WHERE` reports it.
    pub(crate) fn in_where(self) -> Self {
        self.within("run Where error: ")
    }

    /// The error as eKuiper's join operator reports it (`ON`, or a key it hashes).
    pub(crate) fn in_join(self) -> Self {
        self.within("run Join error: ")
    }

    /// The error as eKuiper's `HAVING` reports it.
    pub(crate) fn in_having(self) -> Self {
        self.within("run Having error: ")
    }

    /// How many messages the call producing it had made before it: with `sendError`, its
    /// message goes there, in order among them.
    pub fn place(&self) -> usize {
        self.place
    }

    pub(crate) fn placed(mut self, place: usize) -> Self {
        self.place = place;
        self
    }
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`: integer division for two `bigint`s, as in eKuiper.
    Div,
    /// `%`
    Mod,
    /// `=`
    Eq,
    /// `!=` or `<>`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
    /// `&`
    BitAnd,
    /// `|`
    BitOr,
    /// `^`
    BitXor,
}

impl BinOp {
    /// The operator as written in SQL.
    pub const fn symbol(self) -> &'static str {
        match self {
            Self::Add => "+",
            Self::Sub => "-",
            Self::Mul => "*",
            Self::Div => "/",
            Self::Mod => "%",
            Self::Eq => "=",
            Self::NotEq => "!=",
            Self::Lt => "<",
            Self::LtEq => "<=",
            Self::Gt => ">",
            Self::GtEq => ">=",
            Self::BitAnd => "&",
            Self::BitOr => "|",
            Self::BitXor => "^",
        }
    }

    const fn is_comparison(self) -> bool {
        matches!(
            self,
            Self::Eq | Self::NotEq | Self::Lt | Self::LtEq | Self::Gt | Self::GtEq
        )
    }
}

/// A unary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    /// `NOT`
    Not,
    /// `-`
    Neg,
    /// `~`
    BitNot,
}

/// A reference to a field of the row, resolved to a position once per row layout.
#[derive(Debug)]
pub struct Column {
    /// The stream (or alias) it was qualified with, if any.
    pub qualifier: Option<Arc<str>>,
    /// The position of that stream in the statement's FROM list (joins), once resolved.
    pub stream: Option<usize>,
    /// The field name.
    pub name: Arc<str>,
    /// The last layout seen and the field's position in it. Holding the `Arc` keeps the schema
    /// alive, so its address cannot be reused by a different layout.
    cache: RefCell<Option<(Arc<Schema>, Option<usize>)>>,
}

impl Clone for Column {
    fn clone(&self) -> Self {
        let mut c = Self::new(self.qualifier.clone(), Arc::clone(&self.name));
        c.stream = self.stream;
        c
    }
}

impl Column {
    /// A column reference.
    pub fn new(qualifier: Option<Arc<str>>, name: Arc<str>) -> Self {
        Self {
            qualifier,
            stream: None,
            name,
            cache: RefCell::new(None),
        }
    }

    /// The column's value in `row`, if the row has the field.
    pub fn lookup<'r>(&self, row: &'r Row) -> Option<&'r Value> {
        let schema = row.schema();
        if let Some((cached, index)) = &*self.cache.borrow()
            && Arc::ptr_eq(cached, schema)
        {
            return index.map(|i| row.at(i));
        }
        let index = schema.index_of(&self.name);
        *self.cache.borrow_mut() = Some((Arc::clone(schema), index));
        index.map(|i| row.at(i))
    }
}

/// A compiled expression.
#[derive(Debug, Clone)]
pub enum Expr {
    /// A constant.
    Literal(Value),
    /// A field of the row.
    Column(Column),
    /// A unary operation.
    Unary(UnaryOp, Box<Expr>),
    /// A binary arithmetic, comparison or bitwise operation.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `AND`, short-circuiting.
    And(Box<Expr>, Box<Expr>),
    /// `OR`, short-circuiting.
    Or(Box<Expr>, Box<Expr>),
    /// `CASE [operand] WHEN .. THEN .. [ELSE ..] END`.
    Case {
        /// The value compared against each `WHEN` (simple form), if any.
        operand: Option<Box<Expr>>,
        /// `WHEN` conditions (or values) and their results.
        whens: Vec<(Expr, Expr)>,
        /// The `ELSE` result.
        otherwise: Option<Box<Expr>>,
    },
    /// `IS [NOT] NULL`.
    IsNull(Box<Expr>, bool),
    /// `[NOT] IN (list)`.
    InList(Box<Expr>, Vec<Expr>, bool),
    /// `[NOT] IN arr`: membership in the array an expression gives (eKuiper's `IN` over a
    /// field holding an array).
    InArray(Box<Expr>, Box<Expr>, bool),
    /// `[NOT] BETWEEN low AND high`.
    Between(Box<Expr>, Box<Expr>, Box<Expr>, bool),
    /// `[NOT] LIKE pattern`, with `%` and `_` wildcards and `\` escapes.
    Like(Box<Expr>, Box<Expr>, bool),
    /// A scalar function call.
    Call(&'static ScalarDef, Vec<Expr>),
    /// `expr->name`: a field of a nested object.
    Field(Box<Expr>, Arc<str>),
    /// `expr[index]`: an array element (negative counts from the end).
    Index(Box<Expr>, Box<Expr>),
    /// `expr[start:end]`: part of an array.
    Slice(Box<Expr>, Option<Box<Expr>>, Option<Box<Expr>>),
    /// The value of an aggregate over the current group (its slot in the query's list).
    Aggregate(usize),
    /// `window_start()`: the start of the window being evaluated (ms).
    WindowStart,
    /// `window_end()`: the end of the window being evaluated (ms).
    WindowEnd,
    /// `*` as a function's argument (`changed_col(true, *)`): the whole row as an object, its
    /// fields as `SELECT *` gives them.
    Row,
    /// `row_number()`: the number of the row (or group) in its result, as the runner numbers
    /// them; 1 for a row alone.
    RowNumber,
}

/// What an expression reads: one row, a joined tuple, or a group of them.
pub trait Scope {
    /// The value of a column, if the scope has it.
    fn column(&self, col: &Column) -> Option<&Value>;
    /// The event (or arrival) time, in milliseconds since the Unix epoch.
    fn timestamp_ms(&self) -> i64;
    /// The value of aggregate `slot` (group scopes only).
    fn aggregate(&self, _slot: usize) -> Option<&Value> {
        None
    }
    /// The window being evaluated, as `(start, end)` in milliseconds.
    fn window(&self) -> Option<(i64, i64)> {
        None
    }
    /// What `event_time()` gives: the window's end when a window is evaluated, else the
    /// timestamp.
    fn event_time_ms(&self) -> i64 {
        self.window()
            .map_or_else(|| self.timestamp_ms(), |(_, end)| end)
    }
    /// Visits the fields `*` (all streams, `None`) or `stream.*` (`Some(i)`) stands for.
    fn fields(&self, stream: Option<usize>, visit: &mut dyn FnMut(&Arc<str>, &Value));
    /// What `meta(...)` reads: the source's metadata of the row (a group's or joined tuple's
    /// first row), if its source gives any.
    fn meta(&self) -> Option<&Value> {
        None
    }
    /// What `meta(stream.key)` reads: the metadata of the row of source `source` (in `FROM`
    /// order), if the scope has that row and its source gives metadata.
    fn source_meta(&self, source: usize) -> Option<&Value> {
        if source == 0 { self.meta() } else { None }
    }
    /// What `row_number()` gives: the number the runner gave the row (or group) in its result;
    /// `None` for a row alone, which is 1.
    fn row_number(&self) -> Option<i64> {
        None
    }
}

impl Scope for Row {
    fn column(&self, col: &Column) -> Option<&Value> {
        col.lookup(self)
    }

    fn timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }

    fn fields(&self, _stream: Option<usize>, visit: &mut dyn FnMut(&Arc<str>, &Value)) {
        for (k, v) in self.iter() {
            if !crate::analytic::is_hidden(k) {
                visit(k, v);
            }
        }
    }

    fn meta(&self) -> Option<&Value> {
        Row::meta(self).map(|m| &**m)
    }
}

/// What an expression is evaluated against, besides the row.
#[derive(Debug, Clone, Copy)]
pub struct EvalCtx<'a> {
    /// Processing time in milliseconds since the Unix epoch.
    pub now_ms: i64,
    /// The row's metadata (an object, or `Null`).
    pub meta: &'a Value,
}

const NULL: Value = Value::Null;

impl Expr {
    /// The value of an operand: a column's or a literal's borrowed where it is (most
    /// comparisons, `temperature > 30`, read one of each), any other expression evaluated.
    pub(crate) fn operand<'a, S: Scope + ?Sized>(
        &'a self,
        row: &'a S,
        ctx: &EvalCtx<'_>,
    ) -> Result<std::borrow::Cow<'a, Value>, EvalError> {
        use std::borrow::Cow;
        Ok(match self {
            Self::Literal(v) => Cow::Borrowed(v),
            Self::Column(c) => Cow::Borrowed(row.column(c).unwrap_or(&NULL)),
            other => Cow::Owned(other.eval(row, ctx)?),
        })
    }

    /// Evaluates the expression over `row` (a row, a joined tuple or a group).
    pub fn eval<S: Scope + ?Sized>(&self, row: &S, ctx: &EvalCtx<'_>) -> Result<Value, EvalError> {
        match self {
            Self::Literal(v) => Ok(v.clone()),
            Self::Column(c) => Ok(row.column(c).cloned().unwrap_or(Value::Null)),
            Self::Aggregate(slot) => Ok(row.aggregate(*slot).cloned().unwrap_or(Value::Null)),
            Self::WindowStart => Ok(row.window().map_or(Value::Null, |(s, _)| Value::Int(s))),
            Self::WindowEnd => Ok(row.window().map_or(Value::Null, |(_, e)| Value::Int(e))),
            Self::RowNumber => Ok(Value::Int(row.row_number().unwrap_or(1))),
            Self::Row => {
                let mut map = crate::value::Map::new();
                row.fields(None, &mut |k, v| {
                    map.insert(Arc::clone(k), v.clone());
                });
                Ok(Value::object(map))
            }
            Self::Unary(op, e) => unary(*op, e.eval(row, ctx)?),
            Self::Binary(op, l, r) => binary(*op, &*l.operand(row, ctx)?, &*r.operand(row, ctx)?),
            Self::And(l, r) => {
                if !l.eval(row, ctx)?.is_true() {
                    return Ok(Value::Bool(false));
                }
                Ok(Value::Bool(r.eval(row, ctx)?.is_true()))
            }
            Self::Or(l, r) => {
                if l.eval(row, ctx)?.is_true() {
                    return Ok(Value::Bool(true));
                }
                Ok(Value::Bool(r.eval(row, ctx)?.is_true()))
            }
            Self::Case {
                operand,
                whens,
                otherwise,
            } => {
                let operand = operand.as_ref().map(|o| o.eval(row, ctx)).transpose()?;
                for (when, then) in whens {
                    let w = when.eval(row, ctx)?;
                    let hit = match &operand {
                        Some(o) => binary(BinOp::Eq, o, &w)?.is_true(),
                        None => w.is_true(),
                    };
                    if hit {
                        return then.eval(row, ctx);
                    }
                }
                match otherwise {
                    Some(e) => e.eval(row, ctx),
                    None => Ok(Value::Null),
                }
            }
            Self::IsNull(e, negated) => Ok(Value::Bool(e.eval(row, ctx)?.is_null() != *negated)),
            Self::InList(e, list, negated) => {
                let v = e.eval(row, ctx)?;
                if v.is_null() {
                    return Ok(Value::Bool(false));
                }
                for item in list {
                    if binary(BinOp::Eq, &v, &item.eval(row, ctx)?)?.is_true() {
                        return Ok(Value::Bool(!negated));
                    }
                }
                Ok(Value::Bool(*negated))
            }
            // As eKuiper's: an array that is null holds nothing (`IN` false, `NOT IN` true);
            // a null value is in nothing, and not out of anything either (both false).
            Self::InArray(e, array, negated) => {
                let items = match array.eval(row, ctx)? {
                    Value::Null => return Ok(Value::Bool(*negated)),
                    Value::Array(items) => items,
                    other => {
                        return Err(EvalError::new(format!(
                            "IN needs an array on its right, got {}",
                            describe(&other)
                        )));
                    }
                };
                let v = e.eval(row, ctx)?;
                if v.is_null() {
                    return Ok(Value::Bool(false));
                }
                for item in items.iter() {
                    let equal = binary(BinOp::Eq, &v, item).map_err(|e| {
                        let sent = format!("evaluate in expression error: {}", e.sent());
                        EvalError::worded(e.message().to_string(), sent)
                    })?;
                    if equal.is_true() {
                        return Ok(Value::Bool(!negated));
                    }
                }
                Ok(Value::Bool(*negated))
            }
            Self::Between(e, low, high, negated) => {
                let v = e.eval(row, ctx)?;
                let (lo, hi) = (low.eval(row, ctx)?, high.eval(row, ctx)?);
                if v.is_null() || lo.is_null() || hi.is_null() {
                    return Ok(Value::Bool(false));
                }
                let inside = binary(BinOp::GtEq, &v, &lo)?.is_true()
                    && binary(BinOp::LtEq, &v, &hi)?.is_true();
                Ok(Value::Bool(inside != *negated))
            }
            Self::Like(e, pattern, negated) => {
                let v = e.eval(row, ctx)?;
                let p = pattern.eval(row, ctx)?;
                match (&v, &p) {
                    (Value::String(s), Value::String(p)) => {
                        Ok(Value::Bool(like(s.as_bytes(), p.as_bytes()) != *negated))
                    }
                    (Value::Null, _) | (_, Value::Null) => Ok(Value::Bool(false)),
                    _ => Err(EvalError::new(format!(
                        "LIKE needs strings, got {} LIKE {}",
                        v.type_name(),
                        p.type_name()
                    ))),
                }
            }
            Self::Call(def, args) => call(def, args, row, ctx),
            // As eKuiper: a field of anything but an object is null.
            Self::Field(e, name) => Ok(match e.eval(row, ctx)? {
                Value::Object(map) => map.get(&**name).cloned().unwrap_or(Value::Null),
                _ => Value::Null,
            }),
            Self::Index(e, index) => {
                let v = e.eval(row, ctx)?;
                let i = index.eval(row, ctx)?;
                index_value(&v, &i)
            }
            Self::Slice(e, start, end) => {
                let v = e.eval(row, ctx)?;
                let start = start.as_ref().map(|s| s.eval(row, ctx)).transpose()?;
                let end = end.as_ref().map(|s| s.eval(row, ctx)).transpose()?;
                slice_value(&v, start.as_ref(), end.as_ref())
            }
        }
    }

    /// True when the expression reads no field of the row (so it can be folded).
    pub fn is_constant(&self) -> bool {
        match self {
            Self::Literal(_) => true,
            Self::Column(_)
            | Self::Call(..)
            | Self::Aggregate(_)
            | Self::WindowStart
            | Self::WindowEnd
            | Self::Row
            | Self::RowNumber => false,
            Self::Unary(_, e) | Self::IsNull(e, _) | Self::Field(e, _) => e.is_constant(),
            Self::Binary(_, l, r)
            | Self::And(l, r)
            | Self::Or(l, r)
            | Self::Like(l, r, _)
            | Self::InArray(l, r, _)
            | Self::Index(l, r) => l.is_constant() && r.is_constant(),
            Self::Case {
                operand,
                whens,
                otherwise,
            } => {
                operand.as_ref().is_none_or(|o| o.is_constant())
                    && whens
                        .iter()
                        .all(|(w, t)| w.is_constant() && t.is_constant())
                    && otherwise.as_ref().is_none_or(|o| o.is_constant())
            }
            Self::InList(e, list, _) => e.is_constant() && list.iter().all(Self::is_constant),
            Self::Between(a, b, c, _) => a.is_constant() && b.is_constant() && c.is_constant(),
            Self::Slice(e, s, t) => {
                e.is_constant()
                    && s.as_ref().is_none_or(|x| x.is_constant())
                    && t.as_ref().is_none_or(|x| x.is_constant())
            }
        }
    }
}

fn call<S: Scope + ?Sized>(
    def: &'static ScalarDef,
    args: &[Expr],
    row: &S,
    ctx: &EvalCtx<'_>,
) -> Result<Value, EvalError> {
    // `meta(stream.key)` and `mqtt(stream.key)` are compiled with the source's index as a
    // second argument.
    let meta = match (def.name, args.get(1)) {
        ("meta" | "mqtt", Some(Expr::Literal(Value::Int(source)))) => usize::try_from(*source)
            .ok()
            .and_then(|s| row.source_meta(s))
            .unwrap_or(&NULL),
        _ => row.meta().unwrap_or(ctx.meta),
    };
    let fn_ctx = FnCtx {
        now_ms: ctx.now_ms,
        meta,
        timestamp_ms: row.event_time_ms(),
    };
    let result = if args.len() <= 4 {
        let mut values = [NULL, NULL, NULL, NULL];
        for (slot, arg) in values.iter_mut().zip(args) {
            *slot = arg.eval(row, ctx)?;
        }
        (def.call)(&fn_ctx, &values[..args.len()])
    } else {
        let values = args
            .iter()
            .map(|a| a.eval(row, ctx))
            .collect::<Result<Vec<_>, _>>()?;
        (def.call)(&fn_ctx, &values)
    };
    // eKuiper's valuer reports a function's failure as `call func <name> error: <its error>`;
    // Oort's text starts with the function's name.
    result.map_err(|e| {
        let own =
            e.0.strip_prefix(def.name)
                .and_then(|r| r.strip_prefix(": "));
        let sent = format!("call func {} error: {}", def.name, own.unwrap_or(&e.0));
        EvalError::worded(e.0, sent)
    })
}

fn unary(op: UnaryOp, v: Value) -> Result<Value, EvalError> {
    match (op, v) {
        (_, Value::Null) => Ok(Value::Null),
        (UnaryOp::Not, Value::Bool(b)) => Ok(Value::Bool(!b)),
        (UnaryOp::Neg, Value::Int(i)) => Ok(Value::Int(i.wrapping_neg())),
        (UnaryOp::Neg, Value::Float(f)) => Ok(Value::Float(-f)),
        (UnaryOp::BitNot, Value::Int(i)) => Ok(Value::Int(!i)),
        (op, v) => Err(EvalError::new(format!(
            "invalid operation {} {}",
            match op {
                UnaryOp::Not => "NOT",
                UnaryOp::Neg => "-",
                UnaryOp::BitNot => "~",
            },
            describe(&v)
        ))),
    }
}

/// Describes a value for an error message: `bigint(1)`, `string("a")`.
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("string({s:?})"),
        other => format!("{}({})", other.type_name(), other.to_text()),
    }
}

fn invalid(op: BinOp, l: &Value, r: &Value) -> EvalError {
    use crate::wording::go_typed;
    EvalError::worded(
        format!(
            "invalid operation {} {} {}",
            describe(l),
            op.symbol(),
            describe(r)
        ),
        format!(
            "invalid operation {} {} {}",
            go_typed(l),
            op.symbol(),
            go_typed(r)
        ),
    )
}

/// Applies a binary operator with eKuiper's rules.
pub fn binary(op: BinOp, l: &Value, r: &Value) -> Result<Value, EvalError> {
    use BinOp::*;
    if l.is_null() || r.is_null() {
        return Ok(
            if op.is_comparison() || matches!(op, BitAnd | BitOr | BitXor) {
                Value::Bool(false)
            } else {
                Value::Null
            },
        );
    }
    match (l, r) {
        (Value::Int(a), Value::Int(b)) => {
            let (a, b) = (*a, *b);
            Ok(match op {
                Add => Value::Int(a.wrapping_add(b)),
                Sub => Value::Int(a.wrapping_sub(b)),
                Mul => Value::Int(a.wrapping_mul(b)),
                Div if b == 0 => return Err(EvalError::new("divided by zero".into())),
                Div => Value::Int(a.wrapping_div(b)),
                Mod if b == 0 => return Err(EvalError::new("divided by zero".into())),
                Mod => Value::Int(a.wrapping_rem(b)),
                Eq => Value::Bool(a == b),
                NotEq => Value::Bool(a != b),
                Lt => Value::Bool(a < b),
                LtEq => Value::Bool(a <= b),
                Gt => Value::Bool(a > b),
                GtEq => Value::Bool(a >= b),
                BitAnd => Value::Int(a & b),
                BitOr => Value::Int(a | b),
                BitXor => Value::Int(a ^ b),
            })
        }
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            let (a, b) = (l.as_f64().unwrap_or(0.0), r.as_f64().unwrap_or(0.0));
            Ok(match op {
                Add => Value::Float(a + b),
                Sub => Value::Float(a - b),
                Mul => Value::Float(a * b),
                Div if b == 0.0 => return Err(EvalError::new("divided by zero".into())),
                Div => Value::Float(a / b),
                Mod if b == 0.0 => return Err(EvalError::new("divided by zero".into())),
                Mod => Value::Float(a % b),
                Eq => Value::Bool(a == b),
                NotEq => Value::Bool(a != b),
                Lt => Value::Bool(a < b),
                LtEq => Value::Bool(a <= b),
                Gt => Value::Bool(a > b),
                GtEq => Value::Bool(a >= b),
                BitAnd | BitOr | BitXor => return Err(invalid(op, l, r)),
            })
        }
        (Value::String(a), Value::String(b)) => Ok(Value::Bool(match op {
            Eq => a == b,
            NotEq => a != b,
            Lt => a < b,
            LtEq => a <= b,
            Gt => a > b,
            GtEq => a >= b,
            _ => return Err(invalid(op, l, r)),
        })),
        (Value::Bool(a), Value::Bool(b)) => Ok(Value::Bool(match op {
            Eq => a == b,
            NotEq => a != b,
            BitAnd => *a && *b,
            BitOr => *a || *b,
            BitXor => a != b,
            _ => return Err(invalid(op, l, r)),
        })),
        (Value::Array(_) | Value::Object(_) | Value::Bytes(_), _) if matches!(op, Eq | NotEq) => {
            Ok(Value::Bool((l == r) == (op == Eq)))
        }
        _ => Err(invalid(op, l, r)),
    }
}

fn index_value(v: &Value, i: &Value) -> Result<Value, EvalError> {
    match (v, i) {
        (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
        (Value::Array(items), Value::Int(i)) => {
            let len = items.len() as i64;
            let at = if *i < 0 { len + i } else { *i };
            if (0..len).contains(&at) {
                Ok(items[at as usize].clone())
            } else {
                Err(EvalError::worded(
                    format!("index {i} out of range for an array of {len}"),
                    format!("out of index: {i} of {len}"),
                ))
            }
        }
        (Value::Object(map), Value::String(key)) => {
            Ok(map.get(&**key).cloned().unwrap_or(Value::Null))
        }
        // eKuiper compares the value with its bracket (`[0]` holds start and end 0) and fails.
        (Value::String(_) | Value::Int(_) | Value::Float(_) | Value::Bool(_), Value::Int(n)) => {
            Err(EvalError::worded(
                format!("cannot index a {} with a {}", v.type_name(), i.type_name()),
                format!(
                    "invalid operation {} [] *xsql.BracketEvalResult(&{{{n} {n}}})",
                    crate::wording::go_typed(v)
                ),
            ))
        }
        _ => Err(EvalError::new(format!(
            "cannot index a {} with a {}",
            v.type_name(),
            i.type_name()
        ))),
    }
}

fn slice_value(v: &Value, start: Option<&Value>, end: Option<&Value>) -> Result<Value, EvalError> {
    let Value::Array(items) = v else {
        return match v {
            Value::Null => Ok(Value::Null),
            other => Err(EvalError::new(format!(
                "cannot slice a {}",
                other.type_name()
            ))),
        };
    };
    let len = items.len() as i64;
    let bound = |b: Option<&Value>, default: i64| -> Result<i64, EvalError> {
        match b {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Int(i)) => Ok(if *i < 0 {
                (len + i).max(0)
            } else {
                (*i).min(len)
            }),
            Some(other) => Err(EvalError::new(format!(
                "slice bounds must be bigint, got {}",
                other.type_name()
            ))),
        }
    };
    let (s, e) = (bound(start, 0)?, bound(end, len)?);
    if s > e {
        return Err(EvalError::new(format!(
            "slice start {s} is after its end {e}"
        )));
    }
    Ok(Value::array(items[s as usize..e as usize].to_vec()))
}

/// SQL `LIKE`: `%` matches any run, `_` any one character, `\` escapes the next one.
pub fn like(text: &[u8], pattern: &[u8]) -> bool {
    let text = String::from_utf8_lossy(text);
    let pattern = String::from_utf8_lossy(pattern);
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    // Iterative matcher with backtracking to the last `%`.
    let (mut ti, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '%' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '_' => {
                    ti += 1;
                    pi += 1;
                    continue;
                }
                '\\' if pi + 1 < p.len() && p[pi + 1] == t[ti] => {
                    ti += 1;
                    pi += 2;
                    continue;
                }
                c if c == t[ti] => {
                    ti += 1;
                    pi += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == '%' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_semantics_follow_ekuiper() {
        assert_eq!(
            binary(BinOp::Gt, &Value::Null, &Value::Int(1)).unwrap(),
            Value::Bool(false)
        );
        assert!(
            binary(BinOp::Add, &Value::Null, &Value::Int(1))
                .unwrap()
                .is_null()
        );
    }

    #[test]
    fn numbers_mix_and_integers_divide() {
        assert_eq!(
            binary(BinOp::Div, &Value::Int(7), &Value::Int(2)).unwrap(),
            Value::Int(3)
        );
        assert_eq!(
            binary(BinOp::Div, &Value::Int(7), &Value::Float(2.0)).unwrap(),
            Value::Float(3.5)
        );
        assert!(binary(BinOp::Div, &Value::Int(7), &Value::Int(0)).is_err());
        assert_eq!(
            binary(BinOp::Lt, &Value::Int(1), &Value::Float(1.5)).unwrap(),
            Value::Bool(true)
        );
    }

    #[test]
    fn mismatched_types_are_errors() {
        let err = binary(BinOp::Gt, &Value::Int(1), &Value::string("a")).unwrap_err();
        assert_eq!(err.message(), "invalid operation bigint(1) > string(\"a\")");
        assert_eq!(err.sent(), "invalid operation int64(1) > string(a)");
    }

    #[test]
    fn like_matches_wildcards() {
        assert!(like(b"hello", b"h%o"));
        assert!(like(b"hello", b"h_llo"));
        assert!(like(b"hello", b"%"));
        assert!(!like(b"hello", b"h%x"));
        assert!(like(b"a%b", br"a\%b"));
        assert!(!like(b"axb", br"a\%b"));
        assert!(like(b"mississippi", b"%iss%pi"));
    }
}
