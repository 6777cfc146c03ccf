//! Builds the syntax tree of a template from its tokens, following Go's `text/template/parse`.
//!
//! Beyond Go's parser, this one resolves each variable to a slot in its template's variable
//! stack (so execution never looks names up), resolves `{{template}}` calls to their
//! definitions, and caps nesting depth.

use std::collections::HashMap;

use super::funcs::{self, FuncDef};
use super::lexer::{self, Tok, Token};
use crate::value::Value;

/// Deepest nesting of control structures, parentheses and definitions a template may use.
pub const MAX_NESTING: usize = 100;

/// A list of nodes: a template body or a branch of a control structure.
pub(crate) type List = Vec<Node>;

/// One piece of a template body.
pub(crate) enum Node {
    /// Text copied to the output.
    Text(Box<str>),
    /// `{{pipeline}}`: prints the value unless the pipeline declares variables.
    Action(Pipe),
    /// `{{if}}`.
    If(Box<Branch>),
    /// `{{with}}`.
    With(Box<Branch>),
    /// `{{range}}`.
    Range(Box<Branch>),
    /// `{{template "name" pipeline}}` (also the call half of `{{block}}`).
    Template(Box<TemplateCall>),
    /// `{{break}}`.
    Break,
    /// `{{continue}}`.
    Continue,
}

/// The parts of `if`, `with` and `range`.
pub(crate) struct Branch {
    pub pipe: Pipe,
    pub list: List,
    pub else_list: Option<List>,
}

/// A call of a named template.
pub(crate) struct TemplateCall {
    pub name: Box<str>,
    /// Index into the template's definitions; `None` when no such template is defined.
    pub target: Option<usize>,
    pub pipe: Option<Pipe>,
    pub pos: usize,
    pub end: usize,
}

/// A pipeline, possibly declaring or assigning variables.
pub(crate) struct Pipe {
    pub pos: usize,
    pub end: usize,
    pub decl: Vec<VarRef>,
    /// `=` rather than `:=`.
    pub assign: bool,
    pub cmds: Vec<Cmd>,
}

/// A variable as declared, assigned or used.
pub(crate) struct VarRef {
    /// Slot in the current template's variable stack (0 is `$`); `None` for a name that is
    /// known to the parser but never defined when this code runs (Go fails at run time).
    pub slot: Option<usize>,
    pub name: Box<str>,
}

/// One command of a pipeline: a function call, a field chain or a single operand.
pub(crate) struct Cmd {
    pub pos: usize,
    pub end: usize,
    pub args: Vec<Operand>,
}

/// One operand with its span in the source.
pub(crate) struct Operand {
    pub kind: Arg,
    pub pos: usize,
    pub end: usize,
}

/// What an operand is.
pub(crate) enum Arg {
    /// `.`
    Dot,
    /// `nil`
    Nil,
    /// A string or boolean literal.
    Const(Value),
    /// A number or character literal.
    Num(Box<Num>),
    /// `.a.b`
    Field(Box<[Box<str>]>),
    /// `$x.a.b`
    Var(VarRef, Box<[Box<str>]>),
    /// A function name.
    Func(&'static FuncDef),
    /// `(pipeline)`
    Pipe(Box<Pipe>),
    /// `(pipeline).a.b` or `func.a`
    Chain(Box<Operand>, Box<[Box<str>]>),
}

impl Arg {
    /// Literals are converted to a parameter's type instead of being checked against it.
    pub(crate) const fn is_literal(&self) -> bool {
        matches!(self, Self::Nil | Self::Const(_) | Self::Num(_))
    }
}

/// A numeric constant, with the readings Go allows for it.
pub(crate) struct Num {
    /// The value it has where any type is accepted (Go's "ideal constant"); `None` for an
    /// unsigned constant that does not fit an int.
    pub value: Option<Value>,
    pub int: Option<i64>,
    pub float: Option<f64>,
}

/// A parse error: byte offset and message.
pub(crate) struct ParseError {
    pub pos: usize,
    pub msg: String,
}

type PResult<T> = Result<T, ParseError>;

/// The parsed template: main body and named definitions.
pub(crate) struct Parsed {
    pub src: Box<str>,
    pub root: List,
    pub defs: Vec<List>,
}

/// A name the parser knows as a variable in the current scope.
struct VarEntry {
    name: Box<str>,
    /// `None` for names Go would accept at parse time but that never exist at run time here.
    slot: Option<usize>,
}

struct Parser<'s> {
    src: &'s str,
    toks: Vec<Token>,
    lex_error: Option<String>,
    i: usize,
    vars: Vec<VarEntry>,
    next_slot: usize,
    range_depth: usize,
    depth: usize,
    /// Definitions in order, with their bodies; the last non-empty one of a name wins.
    defs: Vec<(Box<str>, List)>,
    by_name: HashMap<Box<str>, usize>,
}

/// Parses a whole template.
pub(crate) fn parse(src: &str) -> PResult<Parsed> {
    let lexed = lexer::lex(src);
    let mut p = Parser {
        src,
        toks: lexed.tokens,
        lex_error: lexed.error,
        i: 0,
        vars: vec![dollar()],
        next_slot: 1,
        range_depth: 0,
        depth: 0,
        defs: Vec::new(),
        by_name: HashMap::new(),
    };
    let mut root = p.parse_top()?;
    let mut defs: Vec<List> = Vec::with_capacity(p.defs.len());
    for (_, body) in p.defs.drain(..) {
        defs.push(body);
    }
    resolve(&mut root, &p.by_name);
    for body in &mut defs {
        resolve(body, &p.by_name);
    }
    Ok(Parsed {
        src: src.into(),
        root,
        defs,
    })
}

fn dollar() -> VarEntry {
    VarEntry {
        name: "$".into(),
        slot: Some(0),
    }
}

/// Points every `{{template}}` call at its definition.
fn resolve(list: &mut List, names: &HashMap<Box<str>, usize>) {
    for node in list {
        match node {
            Node::Template(call) => call.target = names.get(&call.name).copied(),
            Node::If(b) | Node::With(b) | Node::Range(b) => {
                resolve(&mut b.list, names);
                if let Some(e) = &mut b.else_list {
                    resolve(e, names);
                }
            }
            _ => {}
        }
    }
}

/// Go's `IsEmptyTree`: only blank text.
fn is_empty_list(list: &List) -> bool {
    list.iter().all(|n| match n {
        Node::Text(t) => t.trim().is_empty(),
        _ => false,
    })
}

/// What ended an item list.
enum ListEnd {
    End,
    Else,
}

impl ListEnd {
    const fn describe(&self) -> &'static str {
        match self {
            Self::End => "{{end}}",
            Self::Else => "{{else}}",
        }
    }
}

/// What `text_or_action` produced.
enum Item {
    Node(Node),
    /// A comment or a definition: nothing to add.
    Nothing,
    End(ListEnd),
}

impl<'s> Parser<'s> {
    fn err<T>(&self, pos: usize, msg: impl Into<String>) -> PResult<T> {
        Err(ParseError {
            pos,
            msg: msg.into(),
        })
    }

    fn peek(&self) -> Token {
        self.toks[self.i.min(self.toks.len() - 1)]
    }

    /// The next token; a lexical error ends the parse here.
    fn next(&mut self) -> PResult<Token> {
        let t = self.peek();
        if t.kind == Tok::Error {
            let msg = self.lex_error.clone().unwrap_or_default();
            return self.err(t.start, msg);
        }
        self.i += 1;
        Ok(t)
    }

    fn backup(&mut self) {
        self.i -= 1;
    }

    fn next_non_space(&mut self) -> PResult<Token> {
        loop {
            let t = self.next()?;
            if t.kind != Tok::Space {
                return Ok(t);
            }
        }
    }

    fn peek_non_space(&mut self) -> PResult<Token> {
        let t = self.next_non_space()?;
        self.backup();
        Ok(t)
    }

    fn text(&self, t: &Token) -> &'s str {
        &self.src[t.start..t.end]
    }

    fn unexpected<T>(&self, t: &Token, context: &str) -> PResult<T> {
        let what = lexer::describe(self.src, t, self.lex_error.as_deref());
        self.err(t.start, format!("unexpected {what} in {context}"))
    }

    fn expect(&mut self, kind: Tok, context: &str) -> PResult<Token> {
        let t = self.next_non_space()?;
        if t.kind != kind {
            return self.unexpected(&t, context);
        }
        Ok(t)
    }

    fn enter(&mut self, pos: usize) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return self.err(
                pos,
                format!("template nested deeper than {MAX_NESTING} levels"),
            );
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn parse_top(&mut self) -> PResult<List> {
        let mut root = List::new();
        while self.peek().kind != Tok::Eof {
            match self.text_or_action(true)? {
                Item::Node(n) => root.push(n),
                Item::Nothing => {}
                Item::End(end) => {
                    let pos = self.toks[self.i.saturating_sub(1)].start;
                    return self.err(pos, format!("unexpected {}", end.describe()));
                }
            }
        }
        Ok(root)
    }

    fn text_or_action(&mut self, top: bool) -> PResult<Item> {
        let t = self.next_non_space()?;
        match t.kind {
            Tok::Text => Ok(Item::Node(Node::Text(self.text(&t).into()))),
            Tok::LeftDelim => {
                if top && self.peek_non_space()?.kind == Tok::Define {
                    self.next_non_space()?;
                    self.definition(t.start)?;
                    return Ok(Item::Nothing);
                }
                self.action()
            }
            _ => self.unexpected(&t, "input"),
        }
    }

    /// Items up to `{{end}}` or `{{else}}`.
    fn item_list(&mut self) -> PResult<(List, ListEnd)> {
        let mut list = List::new();
        while self.peek_non_space()?.kind != Tok::Eof {
            match self.text_or_action(false)? {
                Item::Node(n) => list.push(n),
                Item::Nothing => {}
                Item::End(end) => return Ok((list, end)),
            }
        }
        let pos = self.peek().start;
        self.err(pos, "unexpected EOF")
    }

    /// Parses a body with a fresh variable scope holding only `$`, as definitions have.
    fn fresh_scope<T>(&mut self, f: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        let vars = std::mem::replace(&mut self.vars, vec![dollar()]);
        let next_slot = std::mem::replace(&mut self.next_slot, 1);
        let range_depth = std::mem::replace(&mut self.range_depth, 0);
        let result = f(self);
        self.vars = vars;
        self.next_slot = next_slot;
        self.range_depth = range_depth;
        result
    }

    /// `{{define "name"}} ... {{end}}`, after the `define` keyword.
    fn definition(&mut self, pos: usize) -> PResult<()> {
        const CONTEXT: &str = "define clause";
        let t = self.next_non_space()?;
        if !matches!(t.kind, Tok::String | Tok::RawString) {
            return self.unexpected(&t, CONTEXT);
        }
        let name = self.unquote(&t)?;
        self.expect(Tok::RightDelim, CONTEXT)?;
        self.enter(pos)?;
        let (body, end) = self.fresh_scope(|p| p.item_list())?;
        self.leave();
        if let ListEnd::Else = end {
            return self.err(pos, format!("unexpected {} in {CONTEXT}", end.describe()));
        }
        self.add_definition(pos, name, body)
    }

    fn add_definition(&mut self, pos: usize, name: String, body: List) -> PResult<()> {
        match self.by_name.get(name.as_str()) {
            Some(&i) if !is_empty_list(&self.defs[i].1) => {
                if !is_empty_list(&body) {
                    return self.err(
                        pos,
                        format!("multiple definition of template {}", lexer::go_quote(&name)),
                    );
                }
            }
            Some(&i) => self.defs[i].1 = body,
            None => {
                self.by_name.insert(name.clone().into(), self.defs.len());
                self.defs.push((name.into(), body));
            }
        }
        Ok(())
    }

    /// After `{{`: a control structure or a pipeline.
    fn action(&mut self) -> PResult<Item> {
        let t = self.next_non_space()?;
        match t.kind {
            Tok::Block => return self.block(t.start).map(Item::Node),
            Tok::Break | Tok::Continue => {
                let word = if t.kind == Tok::Break {
                    "{{break}}"
                } else {
                    "{{continue}}"
                };
                let after = self.next_non_space()?;
                if after.kind != Tok::RightDelim {
                    return self.unexpected(&after, word);
                }
                if self.range_depth == 0 {
                    return self.err(t.start, format!("{word} outside {{{{range}}}}"));
                }
                let node = if t.kind == Tok::Break {
                    Node::Break
                } else {
                    Node::Continue
                };
                return Ok(Item::Node(node));
            }
            Tok::Else => {
                // `{{else if ...}}` and `{{else with ...}}` leave the keyword for the caller.
                if !matches!(self.peek_non_space()?.kind, Tok::If | Tok::With) {
                    self.expect(Tok::RightDelim, "else")?;
                }
                return Ok(Item::End(ListEnd::Else));
            }
            Tok::End => {
                self.expect(Tok::RightDelim, "end")?;
                return Ok(Item::End(ListEnd::End));
            }
            Tok::If => return self.control(t.start, "if").map(|b| Item::Node(Node::If(b))),
            Tok::Range => {
                return self
                    .control(t.start, "range")
                    .map(|b| Item::Node(Node::Range(b)));
            }
            Tok::With => {
                return self
                    .control(t.start, "with")
                    .map(|b| Item::Node(Node::With(b)));
            }
            Tok::Template => return self.template_call(t.start).map(Item::Node),
            _ => {}
        }
        self.backup();
        // Variables declared here stay in scope until the enclosing `end`.
        Ok(Item::Node(Node::Action(
            self.pipeline("command", Tok::RightDelim)?,
        )))
    }

    /// `if`, `with` and `range` after their keyword.
    fn control(&mut self, pos: usize, context: &'static str) -> PResult<Box<Branch>> {
        self.enter(pos)?;
        let vars_mark = self.vars.len();
        let slot_mark = self.next_slot;
        let result = self.control_body(context);
        self.vars.truncate(vars_mark);
        self.next_slot = slot_mark;
        self.leave();
        result
    }

    fn control_body(&mut self, context: &'static str) -> PResult<Box<Branch>> {
        let pipe = self.pipeline(context, Tok::RightDelim)?;
        let after_pipe = self.vars.len();
        let slots_after_pipe = self.next_slot;
        if context == "range" {
            self.range_depth += 1;
        }
        let listed = self.item_list();
        if context == "range" {
            self.range_depth -= 1;
        }
        let (list, end) = listed?;
        let mut else_list = None;
        if let ListEnd::Else = end {
            // Variables of the first branch are unknown in the second one at run time; Go
            // still accepts their names there and fails only if that code runs.
            for v in &mut self.vars[after_pipe..] {
                v.slot = None;
            }
            self.next_slot = slots_after_pipe;
            let next = self.peek_non_space()?;
            let chained = match (context, next.kind) {
                ("if", Tok::If) => Some(("if", next.start)),
                ("with", Tok::With) => Some(("with", next.start)),
                _ => None,
            };
            if let Some((ctx, pos)) = chained {
                // `{{else if x}}` is `{{else}}{{if x}}...{{end}}` sharing the final `{{end}}`.
                self.next_non_space()?;
                let inner = self.control(pos, ctx)?;
                let node = if ctx == "if" {
                    Node::If(inner)
                } else {
                    Node::With(inner)
                };
                else_list = Some(vec![node]);
            } else {
                let (list, end) = self.item_list()?;
                if let ListEnd::Else = end {
                    let pos = self.toks[self.i.saturating_sub(1)].start;
                    return self.err(pos, format!("expected end; found {}", end.describe()));
                }
                else_list = Some(list);
            }
        }
        Ok(Box::new(Branch {
            pipe,
            list,
            else_list,
        }))
    }

    fn template_name(&mut self, context: &str) -> PResult<String> {
        let t = self.next_non_space()?;
        match t.kind {
            Tok::String | Tok::RawString => self.unquote(&t),
            _ => self.unexpected(&t, context),
        }
    }

    /// `{{template "name" pipeline}}` after the keyword.
    fn template_call(&mut self, pos: usize) -> PResult<Node> {
        const CONTEXT: &str = "template clause";
        let name = self.template_name(CONTEXT)?;
        let mut pipe = None;
        if self.next_non_space()?.kind != Tok::RightDelim {
            self.backup();
            pipe = Some(self.pipeline(CONTEXT, Tok::RightDelim)?);
        }
        let end = self.toks[self.i - 1].end;
        // Errors quote the whole action, `{{template "name"}}`, as Go does.
        let pos = self.src[..pos].rfind("{{").unwrap_or(pos);
        Ok(Node::Template(Box::new(TemplateCall {
            name: name.into(),
            target: None,
            pipe,
            pos,
            end,
        })))
    }

    /// `{{block "name" pipeline}} body {{end}}`: defines the template and calls it.
    fn block(&mut self, pos: usize) -> PResult<Node> {
        const CONTEXT: &str = "block clause";
        let name = self.template_name(CONTEXT)?;
        let pipe = self.pipeline(CONTEXT, Tok::RightDelim)?;
        let end = self.toks[self.i - 1].end;
        self.enter(pos)?;
        let (body, list_end) = self.fresh_scope(|p| p.item_list())?;
        self.leave();
        if let ListEnd::Else = list_end {
            return self.err(
                pos,
                format!("unexpected {} in {CONTEXT}", list_end.describe()),
            );
        }
        self.add_definition(pos, name.clone(), body)?;
        Ok(Node::Template(Box::new(TemplateCall {
            name: name.into(),
            target: None,
            pipe: Some(pipe),
            pos,
            end,
        })))
    }

    /// Finds the variable a name refers to; real variables win over run-time-undefined ones.
    fn lookup_var(&self, name: &str) -> Option<Option<usize>> {
        let mut found = None;
        for v in self.vars.iter().rev() {
            if &*v.name == name {
                if v.slot.is_some() {
                    return Some(v.slot);
                }
                found = Some(None);
            }
        }
        found
    }

    fn declare(&mut self, name: &str, assign: bool) -> VarRef {
        if assign {
            let slot = match self.lookup_var(name) {
                Some(slot) => slot,
                None => {
                    // Go accepts this and fails when it runs; later uses parse too.
                    self.vars.push(VarEntry {
                        name: name.into(),
                        slot: None,
                    });
                    None
                }
            };
            return VarRef {
                slot,
                name: name.into(),
            };
        }
        let slot = self.next_slot;
        self.next_slot += 1;
        self.vars.push(VarEntry {
            name: name.into(),
            slot: Some(slot),
        });
        VarRef {
            slot: Some(slot),
            name: name.into(),
        }
    }

    fn pipeline(&mut self, context: &str, end: Tok) -> PResult<Pipe> {
        let first = self.peek_non_space()?;
        let mut pipe = Pipe {
            pos: first.start,
            end: first.start,
            decl: Vec::new(),
            assign: false,
            cmds: Vec::new(),
        };
        // Declarations: `$x :=`, `$x =`, or `$i, $e :=` in a range. The first of two range
        // variables waits until the operator tells whether it is declared or assigned.
        let mut pending: Option<&'s str> = None;
        loop {
            let v = self.peek_non_space()?;
            if v.kind != Tok::Variable {
                break;
            }
            let mark = self.i;
            self.next_non_space()?;
            let next = self.peek_non_space()?;
            let name = self.text(&v);
            match next.kind {
                Tok::Assign | Tok::Declare => {
                    self.next_non_space()?;
                    pipe.assign = next.kind == Tok::Assign;
                    if let Some(first) = pending.take() {
                        let var = self.declare(first, pipe.assign);
                        pipe.decl.push(var);
                    }
                    let var = self.declare(name, pipe.assign);
                    pipe.decl.push(var);
                }
                Tok::Char if self.text(&next) == "," => {
                    self.next_non_space()?;
                    if context == "range" && pending.is_none() && pipe.decl.is_empty() {
                        let after = self.peek_non_space()?;
                        if matches!(
                            after.kind,
                            Tok::Variable | Tok::RightDelim | Tok::RightParen
                        ) {
                            pending = Some(name);
                            continue;
                        }
                        return self.err(after.start, "range can only initialize variables");
                    }
                    return self.err(v.start, format!("too many declarations in {context}"));
                }
                _ => self.i = mark,
            }
            break;
        }
        if let Some(first) = pending {
            let var = self.declare(first, false);
            pipe.decl.insert(0, var);
        }
        loop {
            let t = self.next_non_space()?;
            if t.kind == end {
                pipe.end = t.start;
                self.check_pipeline(&pipe, context, t.start)?;
                return Ok(pipe);
            }
            match t.kind {
                Tok::Bool
                | Tok::CharConst
                | Tok::Dot
                | Tok::Field
                | Tok::Identifier
                | Tok::Number
                | Tok::Nil
                | Tok::RawString
                | Tok::String
                | Tok::Variable
                | Tok::LeftParen => {
                    self.backup();
                    let cmd = self.command()?;
                    pipe.cmds.push(cmd);
                }
                _ => return self.unexpected(&t, context),
            }
        }
    }

    fn check_pipeline(&self, pipe: &Pipe, context: &str, pos: usize) -> PResult<()> {
        if pipe.cmds.is_empty() {
            return self.err(pos, format!("missing value for {context}"));
        }
        for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
            if matches!(
                c.args[0].kind,
                Arg::Const(_) | Arg::Dot | Arg::Nil | Arg::Num(_)
            ) {
                return self.err(
                    c.pos,
                    format!("non executable command in pipeline stage {}", i + 1),
                );
            }
        }
        Ok(())
    }

    fn command(&mut self) -> PResult<Cmd> {
        let start = self.peek_non_space()?.start;
        let mut cmd = Cmd {
            pos: start,
            end: start,
            args: Vec::new(),
        };
        loop {
            self.peek_non_space()?;
            if let Some(op) = self.operand()? {
                cmd.end = op.end;
                cmd.args.push(op);
            }
            let t = self.next()?;
            match t.kind {
                Tok::Space => continue,
                Tok::RightDelim | Tok::RightParen => self.backup(),
                Tok::Pipe => {}
                _ => return self.unexpected(&t, "operand"),
            }
            break;
        }
        if cmd.args.is_empty() {
            return self.err(start, "empty command");
        }
        Ok(cmd)
    }

    fn field_names(text: &str) -> impl Iterator<Item = Box<str>> + '_ {
        text.split('.').filter(|s| !s.is_empty()).map(Box::from)
    }

    fn operand(&mut self) -> PResult<Option<Operand>> {
        let Some(mut node) = self.term()? else {
            return Ok(None);
        };
        if self.peek().kind == Tok::Field {
            let mut fields: Vec<Box<str>> = Vec::new();
            let mut end = node.end;
            while self.peek().kind == Tok::Field {
                let t = self.next()?;
                fields.extend(Self::field_names(self.text(&t)));
                end = t.end;
            }
            let pos = node.pos;
            let kind = match node.kind {
                Arg::Field(names) => {
                    let mut all = names.into_vec();
                    all.extend(fields);
                    Arg::Field(all.into_boxed_slice())
                }
                Arg::Var(var, names) => {
                    let mut all = names.into_vec();
                    all.extend(fields);
                    Arg::Var(var, all.into_boxed_slice())
                }
                Arg::Const(_) | Arg::Num(_) | Arg::Nil | Arg::Dot => {
                    let text = &self.src[node.pos..node.end];
                    return self.err(
                        node.pos,
                        format!("unexpected . after term {}", lexer::go_quote(text)),
                    );
                }
                other => {
                    node.kind = other;
                    Arg::Chain(Box::new(node), fields.into_boxed_slice())
                }
            };
            return Ok(Some(Operand { kind, pos, end }));
        }
        Ok(Some(node))
    }

    fn term(&mut self) -> PResult<Option<Operand>> {
        let t = self.next_non_space()?;
        let text = self.text(&t);
        let kind = match t.kind {
            Tok::Identifier => match funcs::lookup(text) {
                Some(f) => Arg::Func(f),
                None => {
                    return self.err(
                        t.start,
                        format!("function {} not defined", lexer::go_quote(text)),
                    );
                }
            },
            Tok::Dot => Arg::Dot,
            Tok::Nil => Arg::Nil,
            Tok::Variable => match self.lookup_var(text) {
                Some(slot) => Arg::Var(
                    VarRef {
                        slot,
                        name: text.into(),
                    },
                    Box::new([]),
                ),
                None => {
                    return self.err(
                        t.start,
                        format!("undefined variable {}", lexer::go_quote(text)),
                    );
                }
            },
            Tok::Field => Arg::Field(Self::field_names(text).collect()),
            Tok::Bool => Arg::Const(Value::Bool(text == "true")),
            Tok::CharConst | Tok::Number => Arg::Num(Box::new(self.number(&t)?)),
            Tok::LeftParen => {
                self.enter(t.start)?;
                let pipe = self.pipeline("parenthesized pipeline", Tok::RightParen)?;
                self.leave();
                let end = self.toks[self.i - 1].end;
                return Ok(Some(Operand {
                    kind: Arg::Pipe(Box::new(pipe)),
                    pos: t.start,
                    end,
                }));
            }
            Tok::String | Tok::RawString => Arg::Const(Value::string(self.unquote(&t)?)),
            _ => {
                self.backup();
                return Ok(None);
            }
        };
        Ok(Some(Operand {
            kind,
            pos: t.start,
            end: t.end,
        }))
    }

    fn unquote(&self, t: &Token) -> PResult<String> {
        let text = self.text(t);
        let inner = &text[1..text.len() - 1];
        if t.kind == Tok::RawString {
            return Ok(inner.replace('\r', ""));
        }
        match unquote_escapes(inner, b'"') {
            Some(s) => Ok(s),
            None => self.err(t.start, "invalid syntax"),
        }
    }

    fn number(&self, t: &Token) -> PResult<Num> {
        let text = self.text(t);
        if t.kind == Tok::CharConst {
            let inner = &text[1..text.len() - 1];
            let c = unquote_char(inner).map_err(|malformed| ParseError {
                pos: t.start,
                msg: if malformed {
                    format!("malformed character constant: {text}")
                } else {
                    "invalid syntax".to_owned()
                },
            })?;
            let i = i64::from(u32::from(c));
            return Ok(Num {
                value: Some(Value::Int(i)),
                int: Some(i),
                float: Some(i as f64),
            });
        }
        if text.ends_with('i') {
            return self.err(
                t.start,
                format!("complex number {} is not supported", lexer::go_quote(text)),
            );
        }
        parse_number(text).map_err(|msg| ParseError { pos: t.start, msg })
    }
}

/// Go's `strconv.Unquote` for the body of a quoted string (`quote` is `"` or `'`).
/// Invalid UTF-8 made by byte escapes is replaced, as Oort strings are UTF-8.
pub(crate) fn unquote_escapes(s: &str, quote: u8) -> Option<String> {
    if !s.contains('\\') {
        if s.as_bytes().contains(&quote) {
            return None;
        }
        return Some(s.to_owned());
    }
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    let mut chars = s.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c as u32 == u32::from(quote) {
            return None;
        }
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let (_, e) = chars.next()?;
        let simple = match e {
            'a' => Some(7u8),
            'b' => Some(8),
            'f' => Some(12),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(11),
            '\\' => Some(b'\\'),
            '\'' | '"' if e as u32 == u32::from(quote) => Some(e as u8),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            continue;
        }
        let mut take = |n: usize, radix: u32| -> Option<u32> {
            let mut v = 0u32;
            for _ in 0..n {
                let (_, d) = chars.next()?;
                v = v.checked_mul(radix)?.checked_add(d.to_digit(radix)?)?;
            }
            Some(v)
        };
        match e {
            '0'..='7' => {
                let rest = take(2, 8)?;
                let v = (e as u32 - '0' as u32) * 64 + rest;
                out.push(u8::try_from(v).ok()?);
            }
            'x' => out.push(u8::try_from(take(2, 16)?).ok()?),
            'u' | 'U' => {
                let v = take(if e == 'u' { 4 } else { 8 }, 16)?;
                let c = char::from_u32(v)?;
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The character of a character constant's body, such as `a` or `\n`. The error is `true`
/// when a valid character is followed by more text, `false` for a bad escape.
fn unquote_char(s: &str) -> Result<char, bool> {
    let mut chars = s.chars();
    let first = chars.next().ok_or(false)?;
    if first != '\\' {
        if first == '\'' {
            return Err(false);
        }
        return if chars.next().is_none() {
            Ok(first)
        } else {
            Err(true)
        };
    }
    let e = chars.next().ok_or(false)?;
    let rest = chars.as_str();
    let hex = |n: usize| -> Result<(u32, &str), bool> {
        let digits = rest.get(..n).ok_or(false)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(false);
        }
        Ok((
            u32::from_str_radix(digits, 16).map_err(|_| false)?,
            &rest[n..],
        ))
    };
    let (value, tail) = match e {
        'a' => (7, rest),
        'b' => (8, rest),
        'f' => (12, rest),
        'n' => (10, rest),
        'r' => (13, rest),
        't' => (9, rest),
        'v' => (11, rest),
        '\\' => (92, rest),
        '\'' => (39, rest),
        'x' => hex(2)?,
        'u' => hex(4)?,
        'U' => hex(8)?,
        '0'..='7' => {
            let digits = s.get(1..4).ok_or(false)?;
            if !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                return Err(false);
            }
            let v = u32::from_str_radix(digits, 8).map_err(|_| false)?;
            if v > 255 {
                return Err(false);
            }
            (v, &s[4..])
        }
        _ => return Err(false),
    };
    let c = char::from_u32(value).ok_or(false)?;
    if tail.is_empty() { Ok(c) } else { Err(true) }
}

/// Go's number-literal rules: which of int, float and ideal value the text has.
fn parse_number(text: &str) -> Result<Num, String> {
    let quoted = lexer::go_quote(text);
    let int = parse_go_int(text);
    let uint_too_big = int.is_none() && parse_go_uint(text).is_some();
    let mut num = Num {
        value: None,
        int,
        float: None,
    };
    if let Some(i) = int {
        num.float = Some(i as f64);
    } else if uint_too_big {
        num.float = parse_go_uint(text).map(|u| u as f64);
    } else {
        let Some(f) = parse_go_float(text) else {
            return Err(format!("illegal number syntax: {quoted}"));
        };
        if !text.contains(['.', 'e', 'E', 'p', 'P']) {
            return Err(format!("integer overflow: {quoted}"));
        }
        num.float = Some(f);
        if f.fract() == 0.0 && f.abs() < 9.2e18 {
            num.int = Some(f as i64);
        }
    }
    let hex_int = (text.starts_with("0x") || text.starts_with("0X")) && !text.contains(['p', 'P']);
    let looks_float = !hex_int && text.contains(['.', 'e', 'E', 'p', 'P']);
    num.value = match (looks_float, num.float, num.int) {
        (true, Some(f), _) => Some(Value::Float(f)),
        (_, _, Some(i)) => Some(Value::Int(i)),
        _ => None,
    };
    Ok(num)
}

/// Splits an optional sign and a base prefix, and checks Go's underscore rules.
fn int_parts(text: &str) -> Option<(bool, u32, String)> {
    let (neg, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = body.get(..2).map(str::to_ascii_lowercase);
    let (radix, digits, prefixed) = match lower.as_deref() {
        Some("0x") => (16, &body[2..], true),
        Some("0o") => (8, &body[2..], true),
        Some("0b") => (2, &body[2..], true),
        _ if body.len() > 1 && body.starts_with('0') => (8, &body[1..], true),
        _ => (10, body, false),
    };
    if !underscores_ok(digits, prefixed) {
        return None;
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    if clean.is_empty() || !clean.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    Some((neg, radix, clean))
}

/// Underscores must sit between digits (or right after a base prefix).
fn underscores_ok(digits: &str, prefixed: bool) -> bool {
    if !digits.contains('_') {
        return true;
    }
    let mut prev_digit = prefixed;
    let mut prev_underscore = false;
    for c in digits.chars() {
        if c == '_' {
            if !prev_digit {
                return false;
            }
            prev_digit = false;
            prev_underscore = true;
        } else {
            prev_digit = true;
            prev_underscore = false;
        }
    }
    !prev_underscore
}

/// `strconv.ParseInt(text, 0, 64)`.
pub(crate) fn parse_go_int(text: &str) -> Option<i64> {
    let (neg, radix, digits) = int_parts(text)?;
    let magnitude = u64::from_str_radix(&digits, radix).ok()?;
    if neg {
        if magnitude == 1 << 63 {
            return Some(i64::MIN);
        }
        i64::try_from(magnitude).ok().map(|m| -m)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// `strconv.ParseUint(text, 0, 64)`.
fn parse_go_uint(text: &str) -> Option<u64> {
    if text.starts_with(['-', '+']) {
        return None;
    }
    let (_, radix, digits) = int_parts(text)?;
    u64::from_str_radix(&digits, radix).ok()
}

/// `strconv.ParseFloat(text, 64)` for decimal and hexadecimal literals.
pub(crate) fn parse_go_float(text: &str) -> Option<f64> {
    let (neg, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let hex = body.len() > 2 && body.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("0x"));
    let magnitude = if hex {
        parse_hex_float(&body[2..])?
    } else {
        if !underscores_ok(body, false) {
            return None;
        }
        let clean: String = body.chars().filter(|&c| c != '_').collect();
        let lower = clean.to_ascii_lowercase();
        match lower.as_str() {
            "inf" | "infinity" => f64::INFINITY,
            "nan" => f64::NAN,
            _ => {
                if !clean
                    .bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
                {
                    return None;
                }
                clean.parse::<f64>().ok()?
            }
        }
    };
    Some(if neg { -magnitude } else { magnitude })
}

/// The part of a hex float after `0x`: hex digits, optional fraction, required `p` exponent.
fn parse_hex_float(s: &str) -> Option<f64> {
    let s: String = s.chars().filter(|&c| c != '_').collect();
    let (mantissa, exp) = s.split_once(['p', 'P'])?;
    let exp: i32 = exp.parse().ok()?;
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let mut value = 0f64;
    for c in int_part.chars().chain(frac_part.chars()) {
        value = value * 16.0 + f64::from(c.to_digit(16)?);
    }
    let shift = exp - 4 * i32::try_from(frac_part.len()).ok()?;
    Some(value * 2f64.powi(shift))
}
