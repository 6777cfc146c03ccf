//! Runs a parsed template against a value, with Go's `text/template` execution rules: field
//! and variable evaluation, pipelines, argument conversion for typed function parameters,
//! truthiness, `range`/`with`/`if`, and printing.
//!
//! Values are borrowed from the data and from the template wherever possible ([`Val::Ref`]),
//! so the common actions (`{{.field}}`, `{{range .}}`, `{{toJson .}}`) allocate nothing but
//! output.

use std::sync::Arc;

use super::format;
use super::funcs::{FuncDef, Imp, Ty, truth};
use super::parse::{Arg, Branch, Cmd, Node, Num, Operand, Parsed, Pipe, TemplateCall, VarRef};
use crate::value::{Map, Value};

/// Deepest chain of nested `{{template}}` calls before execution stops.
pub const MAX_TEMPLATE_DEPTH: usize = 100;

/// Deepest nesting of pipelines, control structures and template calls while running.
pub const MAX_EXEC_DEPTH: usize = 300;

/// Most work one render may do, in steps: a pipeline, control structure, template call or
/// `range` iteration is a step, and so is each item or byte of a function's result. It bounds
/// the time of a template that calls itself twice at every level, nests long ranges, or builds
/// a list of lists of the same list.
pub const MAX_WORK: u64 = 1 << 25;

/// Most bytes one render may write.
pub const MAX_OUTPUT: usize = 64 << 20;

/// A shared `null`, for borrowed nil values.
pub(crate) static NULL: Value = Value::Null;

/// A value during execution.
#[derive(Clone, Debug)]
pub(crate) enum Val<'a> {
    /// Go's invalid `reflect.Value`: a missing map key or a nil pipeline result. Prints as
    /// `<no value>`.
    Missing,
    /// A value borrowed from the data or the template.
    Ref(&'a Value),
    /// A value computed while running.
    Own(Value),
}

impl<'a> Val<'a> {
    /// The value, with `null` for [`Val::Missing`].
    pub(crate) fn value(&self) -> &Value {
        match self {
            Self::Missing => &NULL,
            Self::Ref(v) => v,
            Self::Own(v) => v,
        }
    }

    pub(crate) const fn is_missing(&self) -> bool {
        matches!(self, Self::Missing)
    }

    /// What Go does to each command's result: a nil interface becomes "no value".
    fn dig(self) -> Self {
        if self.value().is_null() {
            Self::Missing
        } else {
            self
        }
    }

    /// Field `name` of this value.
    fn field(self, name: &str, has_args: bool) -> Result<Self, String> {
        Ok(match self {
            Self::Missing => Self::Missing,
            Self::Ref(v) => field_of(v, name, has_args)?.map_or(Self::Missing, Self::Ref),
            Self::Own(v) => field_of(&v, name, has_args)?
                .cloned()
                .map_or(Self::Missing, Self::Own),
        })
    }
}

/// Go's field evaluation on a map value: `None` for a missing key.
fn field_of<'v>(v: &'v Value, name: &str, has_args: bool) -> Result<Option<&'v Value>, String> {
    match v {
        Value::Null => Err(format!("nil pointer evaluating interface {{}}.{name}")),
        Value::Object(_) if has_args => Err(format!("{name} is not a method but has arguments")),
        Value::Object(map) => Ok(map.get(name)),
        other => Err(format!(
            "can't evaluate field {name} in type {}",
            format::go_type(other)
        )),
    }
}

/// An error while running, located at a span of the source.
pub(crate) struct ExecError {
    pub pos: usize,
    pub end: usize,
    pub msg: String,
}

type R<T> = Result<T, ExecError>;

fn fail<T>(pos: usize, end: usize, msg: impl Into<String>) -> R<T> {
    Err(ExecError {
        pos,
        end,
        msg: msg.into(),
    })
}

fn at_op<T>(op: &Operand, msg: impl Into<String>) -> R<T> {
    fail(op.pos, op.end, msg)
}

/// How a list of nodes finished.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flow {
    Normal,
    Break,
    Continue,
}

/// Up to four arguments inline, more on the heap.
struct ArgBuf<'a> {
    inline: [Val<'a>; 4],
    len: usize,
    heap: Vec<Val<'a>>,
}

impl<'a> ArgBuf<'a> {
    const fn new() -> Self {
        Self {
            inline: [Val::Missing, Val::Missing, Val::Missing, Val::Missing],
            len: 0,
            heap: Vec::new(),
        }
    }

    fn push(&mut self, v: Val<'a>) {
        if self.len < 4 {
            self.inline[self.len] = v;
        } else {
            if self.heap.is_empty() {
                self.heap.extend(
                    self.inline
                        .iter_mut()
                        .map(|v| std::mem::replace(v, Val::Missing)),
                );
            }
            self.heap.push(v);
        }
        self.len += 1;
    }

    fn as_slice(&self) -> &[Val<'a>] {
        if self.len <= 4 {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }
}

/// The state of one render.
pub(crate) struct Exec<'a, 'o> {
    tmpl: &'a Parsed,
    /// `$` of the template being run.
    frame_dot: Val<'a>,
    /// Variables of slot 1 and up of every active template, `None` while undefined.
    vars: Vec<Option<Val<'a>>>,
    /// Where the current template's variables start in `vars`.
    base: usize,
    depth: usize,
    template_depth: usize,
    /// Steps done (see [`MAX_WORK`]).
    work: u64,
    /// Where this render's output starts in `out`.
    out_start: usize,
    out: &'o mut Vec<u8>,
}

/// Runs `tmpl` with `dot`, appending to `out`.
pub(crate) fn run(tmpl: &Parsed, dot: &Value, out: &mut Vec<u8>) -> Result<(), ExecError> {
    // Go's data is a nil interface for a missing value, which is "no value".
    let dot = if dot.is_null() {
        Val::Missing
    } else {
        Val::Ref(dot)
    };
    let mut exec = Exec {
        tmpl,
        frame_dot: dot.clone(),
        vars: Vec::new(),
        base: 0,
        depth: 0,
        template_depth: 0,
        work: 0,
        out_start: out.len(),
        out,
    };
    exec.walk_list(&dot, &tmpl.root)?;
    Ok(())
}

impl<'a> Exec<'a, '_> {
    fn enter(&mut self, pos: usize, end: usize) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_EXEC_DEPTH {
            return fail(
                pos,
                end,
                format!("exceeded maximum nesting depth ({MAX_EXEC_DEPTH})"),
            );
        }
        self.step(pos, end, 1)
    }

    /// Counts `steps` of work; fails once the render has done too much or written too much.
    fn step(&mut self, pos: usize, end: usize, steps: u64) -> R<()> {
        self.work += steps;
        if self.work > MAX_WORK {
            return fail(
                pos,
                end,
                format!("exceeded the work limit ({MAX_WORK} steps)"),
            );
        }
        if self.out.len() - self.out_start > MAX_OUTPUT {
            return fail(
                pos,
                end,
                format!("output too large (more than {MAX_OUTPUT} bytes)"),
            );
        }
        Ok(())
    }

    fn get_var(&self, var: &VarRef, op: &Operand) -> R<Val<'a>> {
        let found = match var.slot {
            Some(0) => Some(self.frame_dot.clone()),
            Some(slot) => self.vars.get(self.base + slot - 1).and_then(Clone::clone),
            None => None,
        };
        match found {
            Some(v) => Ok(v),
            None => at_op(op, format!("undefined variable: {}", var.name)),
        }
    }

    fn set_var(&mut self, var: &VarRef, value: Val<'a>, pos: usize, end: usize) -> R<()> {
        match var.slot {
            Some(0) => self.frame_dot = value,
            Some(slot) => {
                let i = self.base + slot - 1;
                if i >= self.vars.len() {
                    self.vars.resize(i + 1, None);
                }
                self.vars[i] = Some(value);
            }
            None => return fail(pos, end, format!("undefined variable: {}", var.name)),
        }
        Ok(())
    }

    fn walk_list(&mut self, dot: &Val<'a>, list: &'a [Node]) -> R<Flow> {
        for node in list {
            let flow = self.walk(dot, node)?;
            if flow != Flow::Normal {
                return Ok(flow);
            }
        }
        Ok(Flow::Normal)
    }

    fn walk(&mut self, dot: &Val<'a>, node: &'a Node) -> R<Flow> {
        match node {
            Node::Text(text) => {
                self.out.extend_from_slice(text.as_bytes());
                Ok(Flow::Normal)
            }
            Node::Action(pipe) => {
                self.action(dot, pipe)?;
                Ok(Flow::Normal)
            }
            Node::If(b) => self.walk_if_or_with(dot, b, false),
            Node::With(b) => self.walk_if_or_with(dot, b, true),
            Node::Range(b) => {
                self.walk_range(dot, b)?;
                Ok(Flow::Normal)
            }
            Node::Template(call) => {
                self.walk_template(dot, call)?;
                Ok(Flow::Normal)
            }
            Node::Break => Ok(Flow::Break),
            Node::Continue => Ok(Flow::Continue),
        }
    }

    // The walk_* functions recurse through each other; keeping them apart keeps each stack
    // frame small, which bounds the stack a deeply nested template can use.

    #[inline(never)]
    fn walk_if_or_with(&mut self, dot: &Val<'a>, b: &'a Branch, is_with: bool) -> R<Flow> {
        self.enter(b.pipe.pos, b.pipe.end)?;
        let mark = self.vars.len();
        let val = self.eval_pipeline(dot, &b.pipe)?;
        let flow = if truth(val.value()) {
            let dot = if is_with { &val } else { dot };
            self.walk_list(dot, &b.list)?
        } else if let Some(list) = &b.else_list {
            self.walk_list(dot, list)?
        } else {
            Flow::Normal
        };
        self.vars.truncate(mark);
        self.depth -= 1;
        Ok(flow)
    }

    #[inline(never)]
    fn walk_template(&mut self, dot: &Val<'a>, call: &'a TemplateCall) -> R<()> {
        let Some(target) = call.target else {
            let name = super::lexer::go_quote(&call.name);
            return fail(call.pos, call.end, format!("template {name} not defined"));
        };
        if self.template_depth >= MAX_TEMPLATE_DEPTH {
            return fail(
                call.pos,
                call.end,
                format!("exceeded maximum template depth ({MAX_TEMPLATE_DEPTH})"),
            );
        }
        self.enter(call.pos, call.end)?;
        let val = match &call.pipe {
            Some(pipe) => self.eval_pipeline(dot, pipe)?,
            None => Val::Missing,
        };
        // No dynamic scoping: the called template sees only `$`.
        let saved_dot = std::mem::replace(&mut self.frame_dot, val.clone());
        let saved_base = self.base;
        self.base = self.vars.len();
        self.template_depth += 1;
        let tmpl = self.tmpl;
        self.walk_list(&val, &tmpl.defs[target])?;
        self.template_depth -= 1;
        self.vars.truncate(self.base);
        self.base = saved_base;
        self.frame_dot = saved_dot;
        self.depth -= 1;
        Ok(())
    }

    #[inline(never)]
    fn walk_range(&mut self, dot: &Val<'a>, b: &'a Branch) -> R<()> {
        self.enter(b.pipe.pos, b.pipe.end)?;
        let mark = self.vars.len();
        let val = self.eval_pipeline(dot, &b.pipe)?;
        let iter_mark = self.vars.len();
        let mut iterated = false;
        match &val {
            Val::Missing => {}
            Val::Ref(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    iterated = true;
                    if self.iteration(b, iter_mark, int_val(i), Val::Ref(item))? {
                        break;
                    }
                }
            }
            Val::Ref(Value::Object(map)) => {
                for (k, item) in map.iter() {
                    iterated = true;
                    let key = Val::Own(Value::String(Arc::clone(k)));
                    if self.iteration(b, iter_mark, key, Val::Ref(item))? {
                        break;
                    }
                }
            }
            _ => iterated = self.range_owned(b, iter_mark, val.value())?,
        }
        if !iterated && let Some(list) = &b.else_list {
            self.walk_list(dot, list)?;
        }
        self.vars.truncate(mark);
        self.depth -= 1;
        Ok(())
    }

    /// `range` over a value computed while running; true if the body ran at least once.
    fn range_owned(&mut self, b: &'a Branch, iter_mark: usize, val: &Value) -> R<bool> {
        // Errors point at the pipeline's commands, leaving out its declarations.
        let (pos, end) = match (b.pipe.cmds.first(), b.pipe.cmds.last()) {
            (Some(first), Some(last)) => (first.pos, last.end),
            _ => (b.pipe.pos, b.pipe.end),
        };
        let items: Vec<(Val<'a>, Val<'a>)> = match val {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (int_val(i), Val::Own(v.clone())))
                .collect(),
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| (Val::Own(Value::String(Arc::clone(k))), Val::Own(v.clone())))
                .collect(),
            Value::Bytes(bytes) => bytes
                .iter()
                .enumerate()
                .map(|(i, x)| (int_val(i), Val::Own(Value::Int(i64::from(*x)))))
                .collect(),
            Value::Int(n) => {
                // Go 1.22 and later range over an integer.
                if b.pipe.decl.len() > 1 {
                    return fail(
                        pos,
                        end,
                        format!("can't use {n} to iterate over more than one variable"),
                    );
                }
                if *n > super::funcs::MAX_BUILD as i64 {
                    return fail(pos, end, format!("range over {n} is too long"));
                }
                let mut ran = false;
                for i in 0..*n {
                    ran = true;
                    let v = Val::Own(Value::Int(i));
                    if self.iteration(b, iter_mark, v.clone(), v)? {
                        break;
                    }
                }
                return Ok(ran);
            }
            other => {
                let text = format::to_v_string(other);
                return fail(pos, end, format!("range can't iterate over {text}"));
            }
        };
        let ran = !items.is_empty();
        for (index, elem) in items {
            if self.iteration(b, iter_mark, index, elem)? {
                break;
            }
        }
        Ok(ran)
    }

    /// One pass of a `range` body; true on `{{break}}`.
    #[inline(never)]
    fn iteration(&mut self, b: &'a Branch, mark: usize, index: Val<'a>, elem: Val<'a>) -> R<bool> {
        let decl = &b.pipe.decl;
        let (pos, end) = (b.pipe.pos, b.pipe.end);
        self.step(pos, end, 1)?;
        match decl.len() {
            0 => {}
            1 => self.set_var(&decl[0], elem.clone(), pos, end)?,
            _ => {
                self.set_var(&decl[0], index, pos, end)?;
                self.set_var(&decl[1], elem.clone(), pos, end)?;
            }
        }
        let flow = self.walk_list(&elem, &b.list)?;
        self.vars.truncate(mark);
        Ok(flow == Flow::Break)
    }

    /// `{{pipeline}}`: evaluates and prints, writing string-producing calls straight out.
    fn action(&mut self, dot: &Val<'a>, pipe: &'a Pipe) -> R<()> {
        if pipe.decl.is_empty()
            && let Some((last, rest)) = pipe.cmds.split_last()
            && let Arg::Func(f) = &last.args[0].kind
            && let Some(writer) = f.writer
        {
            self.enter(pipe.pos, pipe.end)?;
            let mut fin = None;
            for cmd in rest {
                fin = Some(self.eval_command(dot, cmd, fin.take())?.dig());
            }
            let args = self.collect_args(dot, f, &last.args[0], &last.args[1..], fin)?;
            if let Err(msg) = writer(args.as_slice(), self.out) {
                let msg = format!("error calling {}: {msg}", f.name);
                return fail(last.pos, last.end, msg);
            }
            self.step(last.pos, last.end, 0)?;
            self.depth -= 1;
            return Ok(());
        }
        let val = self.eval_pipeline(dot, pipe)?;
        if pipe.decl.is_empty() {
            match &val {
                Val::Missing => self.out.extend_from_slice(b"<no value>"),
                v => format::write_v(self.out, v.value()),
            }
        }
        Ok(())
    }

    fn eval_pipeline(&mut self, dot: &Val<'a>, pipe: &'a Pipe) -> R<Val<'a>> {
        self.enter(pipe.pos, pipe.end)?;
        let mut value: Option<Val<'a>> = None;
        for cmd in &pipe.cmds {
            value = Some(self.eval_command(dot, cmd, value.take())?.dig());
        }
        let value = value.unwrap_or(Val::Missing);
        for var in &pipe.decl {
            self.set_var(var, value.clone(), pipe.pos, pipe.end)?;
        }
        self.depth -= 1;
        Ok(value)
    }

    fn not_a_function(cmd: &Cmd, fin: Option<&Val<'a>>, src: &str) -> R<()> {
        if cmd.args.len() > 1 || fin.is_some() {
            let first = &cmd.args[0];
            return fail(
                first.pos,
                first.end,
                format!(
                    "can't give argument to non-function {}",
                    &src[first.pos..first.end]
                ),
            );
        }
        Ok(())
    }

    fn eval_command(&mut self, dot: &Val<'a>, cmd: &'a Cmd, fin: Option<Val<'a>>) -> R<Val<'a>> {
        let first = &cmd.args[0];
        let has_args = cmd.args.len() > 1 || fin.is_some();
        match &first.kind {
            Arg::Field(names) => Self::field_chain(dot.clone(), names, first, has_args),
            Arg::Chain(inner, names) => {
                let recv = self.eval_arg(dot, inner)?;
                Self::field_chain(recv, names, first, has_args)
            }
            Arg::Var(var, names) => {
                let val = self.get_var(var, first)?;
                if names.is_empty() {
                    Self::not_a_function(cmd, fin.as_ref(), &self.tmpl.src)?;
                    Ok(val)
                } else {
                    Self::field_chain(val, names, first, has_args)
                }
            }
            Arg::Func(f) => {
                let val = self.call(dot, f, first, cmd.pos, cmd.end, &cmd.args[1..], fin)?;
                Ok(val)
            }
            Arg::Pipe(pipe) => {
                Self::not_a_function(cmd, fin.as_ref(), &self.tmpl.src)?;
                self.eval_pipeline(dot, pipe)
            }
            Arg::Dot => {
                Self::not_a_function(cmd, fin.as_ref(), &self.tmpl.src)?;
                Ok(dot.clone())
            }
            Arg::Nil => at_op(first, "nil is not a command"),
            Arg::Const(v) => {
                Self::not_a_function(cmd, fin.as_ref(), &self.tmpl.src)?;
                Ok(Val::Ref(v))
            }
            Arg::Num(n) => {
                Self::not_a_function(cmd, fin.as_ref(), &self.tmpl.src)?;
                ideal(n, first, &self.tmpl.src)
            }
        }
    }

    fn field_chain(
        mut cur: Val<'a>,
        names: &[Box<str>],
        op: &Operand,
        has_args: bool,
    ) -> R<Val<'a>> {
        let last = names.len().saturating_sub(1);
        for (i, name) in names.iter().enumerate() {
            cur = match cur.field(name, has_args && i == last) {
                Ok(v) => v,
                Err(msg) => return at_op(op, msg),
            };
        }
        Ok(cur)
    }

    /// Evaluates an operand with no parameter type to convert to.
    fn eval_arg(&mut self, dot: &Val<'a>, op: &'a Operand) -> R<Val<'a>> {
        match &op.kind {
            Arg::Dot => Ok(dot.clone()),
            Arg::Nil => Ok(Val::Missing),
            Arg::Const(v) => Ok(Val::Ref(v)),
            Arg::Num(n) => ideal(n, op, &self.tmpl.src),
            Arg::Field(names) => Self::field_chain(dot.clone(), names, op, false),
            Arg::Var(var, names) => {
                let val = self.get_var(var, op)?;
                Self::field_chain(val, names, op, false)
            }
            Arg::Pipe(pipe) => self.eval_pipeline(dot, pipe),
            Arg::Func(f) => self.call(dot, f, op, op.pos, op.end, &[], None),
            Arg::Chain(inner, names) => {
                let recv = self.eval_arg(dot, inner)?;
                Self::field_chain(recv, names, op, false)
            }
        }
    }

    /// Evaluates an argument for a parameter of type `ty`, as Go's `evalArg` does.
    fn eval_typed_arg(&mut self, dot: &Val<'a>, op: &'a Operand, ty: Ty) -> R<Val<'a>> {
        if op.kind.is_literal() {
            return literal_arg(op, ty, &self.tmpl.src);
        }
        let val = self.eval_arg(dot, op)?;
        match validate(val, ty) {
            Ok(v) => Ok(v),
            Err(msg) => at_op(op, msg),
        }
    }

    fn collect_args(
        &mut self,
        dot: &Val<'a>,
        f: &'static FuncDef,
        name: &Operand,
        args: &'a [Operand],
        fin: Option<Val<'a>>,
    ) -> R<ArgBuf<'a>> {
        let num_in = args.len() + usize::from(fin.is_some());
        let fixed = f.params.len();
        match f.variadic {
            Some(_) if num_in < fixed => {
                return at_op(
                    name,
                    format!(
                        "wrong number of args for {}: want at least {fixed} got {num_in}",
                        f.name
                    ),
                );
            }
            None if num_in != fixed => {
                return at_op(
                    name,
                    format!(
                        "wrong number of args for {}: want {fixed} got {num_in}",
                        f.name
                    ),
                );
            }
            _ => {}
        }
        let ty_at = |i: usize| -> Ty {
            if i < fixed {
                f.params[i]
            } else {
                f.variadic.unwrap_or(Ty::Any)
            }
        };
        let mut buf = ArgBuf::new();
        for (i, op) in args.iter().enumerate() {
            let v = self.eval_typed_arg(dot, op, ty_at(i))?;
            buf.push(v);
        }
        if let Some(fin) = fin {
            match validate(fin, ty_at(args.len())) {
                Ok(v) => buf.push(v),
                Err(msg) => return at_op(name, msg),
            }
        }
        Ok(buf)
    }

    /// Calls a function: checks arity, evaluates and converts arguments, runs it.
    #[expect(
        clippy::too_many_arguments,
        reason = "the call site state a Go template call needs"
    )]
    fn call(
        &mut self,
        dot: &Val<'a>,
        f: &'static FuncDef,
        name: &'a Operand,
        pos: usize,
        end: usize,
        args: &'a [Operand],
        fin: Option<Val<'a>>,
    ) -> R<Val<'a>> {
        let func = match f.imp {
            Imp::And | Imp::Or => return self.and_or(dot, f, name, args, fin),
            Imp::Func(func) => func,
        };
        let buf = self.collect_args(dot, f, name, args, fin)?;
        let result = match func(buf.as_slice()) {
            Ok(v) => v,
            Err(msg) => return fail(pos, end, format!("error calling {}: {msg}", f.name)),
        };
        // A list or map may hold the same value many times over (`list $x $x`, again and
        // again): its whole size counts, however little memory it takes.
        let size = super::funcs::deep_size(result.value(), super::funcs::MAX_BUILD);
        if let Err(msg) = super::funcs::check_size(size) {
            return fail(pos, end, format!("error calling {}: {msg}", f.name));
        }
        self.step(pos, end, size as u64)?;
        // sprig's set/unset change the map in place; Oort maps are immutable, so the new map
        // replaces the variable it came from.
        if f.writes_back
            && let Some(Operand {
                kind: Arg::Var(var, fields),
                pos,
                end,
            }) = args.first()
            && fields.is_empty()
        {
            self.set_var(var, result.clone(), *pos, *end)?;
        }
        Ok(result)
    }

    /// `and` and `or` evaluate their arguments only as far as needed.
    fn and_or(
        &mut self,
        dot: &Val<'a>,
        f: &'static FuncDef,
        name: &Operand,
        args: &'a [Operand],
        fin: Option<Val<'a>>,
    ) -> R<Val<'a>> {
        let num_in = args.len() + usize::from(fin.is_some());
        if num_in == 0 {
            return at_op(
                name,
                format!("wrong number of args for {}: want at least 1 got 0", f.name),
            );
        }
        let want = matches!(f.imp, Imp::Or);
        let mut last = Val::Missing;
        for op in args {
            let v = self.eval_typed_arg(dot, op, Ty::Val)?;
            if truth(v.value()) == want {
                return Ok(v);
            }
            last = v;
        }
        Ok(fin.unwrap_or(last))
    }
}

fn int_val<'a>(i: usize) -> Val<'a> {
    Val::Own(Value::Int(i64::try_from(i).unwrap_or(i64::MAX)))
}

/// A numeric literal where any type is accepted.
fn ideal<'a>(n: &'a Num, op: &Operand, src: &str) -> R<Val<'a>> {
    match &n.value {
        Some(v) => Ok(Val::Ref(v)),
        None => at_op(op, format!("{} overflows int", &src[op.pos..op.end])),
    }
}

/// A literal passed to a typed parameter: converted to it, or rejected like Go does.
fn literal_arg<'a>(op: &'a Operand, ty: Ty, src: &str) -> R<Val<'a>> {
    let found = || &src[op.pos..op.end];
    match (&op.kind, ty) {
        (Arg::Nil, Ty::Any) => Ok(Val::Ref(&NULL)),
        (Arg::Nil, Ty::Val) => Ok(Val::Missing),
        (Arg::Nil, Ty::Map) => Ok(Val::Own(Value::object(Map::new()))),
        (Arg::Nil, t) => at_op(op, format!("cannot assign nil to {}", t.go_name())),
        (Arg::Const(v), Ty::Any | Ty::Val) => Ok(Val::Ref(v)),
        (Arg::Const(v @ Value::String(_)), Ty::Str) => Ok(Val::Ref(v)),
        (Arg::Const(v @ Value::Bool(_)), Ty::Bool) => Ok(Val::Ref(v)),
        (Arg::Num(n), Ty::Any | Ty::Val) => ideal(n, op, src),
        (Arg::Num(n), Ty::Int) if n.int.is_some() => {
            Ok(Val::Own(Value::Int(n.int.unwrap_or_default())))
        }
        (Arg::Num(n), Ty::Float) if n.float.is_some() => {
            Ok(Val::Own(Value::Float(n.float.unwrap_or_default())))
        }
        (_, Ty::Str) => at_op(op, format!("expected string; found {}", found())),
        (_, Ty::Int) => at_op(op, format!("expected integer; found {}", found())),
        (_, Ty::Float) => at_op(op, format!("expected float; found {}", found())),
        (_, Ty::Bool) => at_op(op, format!("expected bool; found {}", found())),
        (_, t) => at_op(
            op,
            format!("can't handle {} for arg of type {}", found(), t.go_name()),
        ),
    }
}

/// Go's `validateType`, lenient about integers and floats standing in for each other.
fn validate<'a>(v: Val<'a>, ty: Ty) -> Result<Val<'a>, String> {
    let missing = v.is_missing();
    let ok = match (ty, v.value()) {
        (Ty::Val, _) => return Ok(v),
        (Ty::Any, _) if missing => return Ok(Val::Ref(&NULL)),
        (Ty::Any, _)
        | (Ty::Str, Value::String(_))
        | (Ty::Int, Value::Int(_))
        | (Ty::Float, Value::Float(_))
        | (Ty::Bool, Value::Bool(_))
        | (Ty::Map, Value::Object(_)) => return Ok(v),
        (Ty::Map, _) if missing => return Ok(Val::Own(Value::object(Map::new()))),
        (Ty::Int, Value::Float(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => {
            Some(Value::Int(*f as i64))
        }
        (Ty::Float, Value::Int(i)) => Some(Value::Float(*i as f64)),
        _ => None,
    };
    match ok {
        Some(converted) => Ok(Val::Own(converted)),
        None if missing => Err(format!("invalid value; expected {}", ty.go_name())),
        None => Err(format!(
            "wrong type for value; expected {}; got {}",
            ty.go_name(),
            format::go_type(v.value())
        )),
    }
}
