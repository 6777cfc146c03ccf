#!/usr/bin/env python3
"""Converts the case tables of eKuiper's operator tests (Go) into the JSON cases of
`runtime/sql/tests/ekuiper_operators.rs`.

    python3 go2json.py <eKuiper checkout or bare git dir> [name ...]

reads `internal/topo/operator/<name>_test.go` (from a work tree, or with `git show HEAD:` from a
bare repository; by default every file ported) and writes
`<name>.json` beside this script. Only the data is converted: the SQL,
the operator's input and its expected result, each case named by its Go test function and index.
The differences Oort keeps are not written here: they live in `<name>.differs.json`, which this
script never touches, so a regeneration keeps them.

The expected output is the operator's: for `project`, `result` (the rows) or `error`; for `filter`,
`kept` (the input's rows or tuples that pass, in the input's shape) or `error`; for `having`,
`kept` (the window's rows when the window passes, or the groups that pass); for `order`, `sorted`
(the rows, tuples or groups in order); for `aggregate`, `groups` (the window's rows or tuples
grouped); for `join` and `join_multi`, `joined` (the joined tuples, each the rows it joins); for
the function files (`str_func`, `math_func`, `misc_func`, `cols_func`), the project operator's
`result` or, for a sequence of rows through one operator (`{"sequence": [...]}`), `results`, the
rows of each. `analyticfuncs_operator_test.go` builds its operator's calls by hand: each case is
the statement they stand for (`translated` says so).

Go values become JSON typed as the runner reads them: a Go `int`/`int64` (and an untyped whole
constant stored in an `interface{}`) a JSON integer, a Go `float64` a JSON number with a fraction
(`122.0`), `nil` `null`, a typed nil slice or map (`[]T(nil)`, which Go reads as empty) `[]` or
`{}`, a `time.Time` `{"$time": "<RFC 3339>"}`.
"""

import datetime
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# --- lexer -------------------------------------------------------------------------------------

TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<raw>`[^`]*`)
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<num>\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|0[xX][0-9a-fA-F]+|\d+)
  | (?P<ident>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<op>:=|\.\.\.|[{}\[\]().,:;&*\-+=!<>|/%])
    """,
    re.S | re.X,
)


def lex(text):
    out = []
    pos = 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m:
            raise SyntaxError(f"cannot read {text[pos:pos + 40]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind == "ws":
            continue
        out.append((kind, m.group(kind)))
    return out


def go_string(tok):
    kind, text = tok
    if kind == "raw":
        return text[1:-1]
    return json.loads(text)  # Go's escapes in these files are JSON's


# --- values ------------------------------------------------------------------------------------


class GoFloat(float):
    """A Go float64 (written with a fraction in JSON even when whole)."""


class Struct(dict):
    """A Go struct or named composite (its type name in `type`)."""

    def __init__(self, type_, fields):
        super().__init__(fields)
        self.type = type_


class Call:
    def __init__(self, name, args):
        self.name = name
        self.args = args


# The function test files: each tests eKuiper's project operator on one row or a sequence.
FUNCTION_FILES = ("str_func", "math_func", "misc_func", "cols_func")

WHOLE = {"int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64"}


def typed(value, type_):
    """An untyped constant given the static type it is stored in."""
    if type_ in ("float64", "float32") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return GoFloat(value)
    return value


class Parser:
    def __init__(self, tokens):
        self.t = tokens
        self.i = 0

    def peek(self, k=0):
        return self.t[self.i + k] if self.i + k < len(self.t) else (None, None)

    def next(self):
        tok = self.t[self.i]
        self.i += 1
        return tok

    def expect(self, text):
        tok = self.next()
        if tok[1] != text:
            raise SyntaxError(f"expected {text!r}, got {tok[1]!r} near token {self.i}")
        return tok

    def at(self, text):
        return self.peek()[1] == text

    # Types: `[]T`, `map[K]V`, `*T`, `interface{}`, `any`, `pkg.Name`, `Name`.
    def parse_type(self):
        if self.at("*") or self.at("&"):
            self.next()
            return self.parse_type()
        if self.at("["):
            self.next()
            self.expect("]")
            return "[]" + self.parse_type()
        kind, text = self.next()
        if text == "map":
            self.expect("[")
            k = self.parse_type()
            self.expect("]")
            return f"map[{k}]" + self.parse_type()
        if text == "interface":
            self.expect("{")
            self.expect("}")
            return "interface{}"
        if text == "struct":
            depth = 0
            while True:
                _, t = self.next()
                if t == "{":
                    depth += 1
                elif t == "}":
                    depth -= 1
                    if depth == 0:
                        return "struct"
        name = text
        while self.at(".") and self.peek(1)[0] == "ident":
            self.next()
            name += "." + self.next()[1]
        return name

    def elem_type(self, type_):
        if type_ is None:
            return None
        if type_.startswith("[]"):
            return type_[2:]
        if type_.startswith("map["):
            depth = 0
            for j, c in enumerate(type_):
                if c == "[":
                    depth += 1
                elif c == "]":
                    depth -= 1
                    if depth == 0:
                        return type_[j + 1:]
        if type_ in ("xsql.Message", "xsql.Metadata", "model.SliceVal"):
            return "interface{}"
        return None

    def composite(self, type_):
        """`{...}` of type `type_` (the type is known; the brace is next)."""
        self.expect("{")
        keyed = None
        items = []
        elem = self.elem_type(type_)
        while not self.at("}"):
            # A key is followed by `:`.
            start = self.i
            key = None
            if self.peek()[0] in ("ident", "str", "raw", "num") and self.peek(1)[1] == ":":
                key_tok = self.next()
                self.next()
                key = go_string(key_tok) if key_tok[0] in ("str", "raw") else key_tok[1]
            value = self.value(elem if type_ and not type_.startswith("map[") else elem)
            if key is None:
                keyed = False if keyed is None else keyed
                items.append(value)
            else:
                keyed = True
                items.append((key, value))
            if self.at(","):
                self.next()
            elif not self.at("}"):
                raise SyntaxError(f"expected , or }} after element at token {start}")
        self.expect("}")
        if type_ is not None and (type_.startswith("map[") or type_ in ("xsql.Message", "xsql.Metadata")):
            return dict(items)
        if type_ is not None and (type_.startswith("[]") or type_ == "model.SliceVal"):
            return list(items)
        if keyed:
            return Struct(type_, dict(items))
        return Struct(type_, {"_": items}) if items else Struct(type_, {})

    def value(self, static=None):
        kind, text = self.peek()
        if text == "-":
            self.next()
            v = self.value(static)
            return typed(-v, static) if not isinstance(v, GoFloat) else GoFloat(-v)
        if text == "&":
            self.next()
            return self.value(static)
        if text == "{":
            # An elided type: the element type of the enclosing composite.
            return self.composite(static)
        if kind in ("str", "raw"):
            self.next()
            return go_string((kind, text))
        if kind == "num":
            self.next()
            if re.fullmatch(r"0[xX][0-9a-fA-F]+|\d+", text):
                v = int(text, 0)
            else:
                v = GoFloat(float(text))
            # A constant expression (`8 / 3`): Go's arithmetic, whole numbers dividing whole.
            while self.peek()[1] in ("*", "/") and self.peek(1)[0] == "num":
                op = self.next()[1]
                r = self.value(None)
                if isinstance(v, GoFloat) or isinstance(r, GoFloat):
                    v = GoFloat(v * r if op == "*" else v / r)
                else:
                    v = v * r if op == "*" else int(v / r)
            return v if isinstance(v, GoFloat) else typed(v, static)
        if text in ("true", "false"):
            self.next()
            return text == "true"
        if text == "nil":
            self.next()
            return None
        if text in ("[", "map", "*", "interface", "struct") or kind == "ident":
            save = self.i
            type_ = self.parse_type()
            if self.at("{"):
                return self.composite(type_)
            if self.at("("):
                self.next()
                args = []
                while not self.at(")"):
                    args.append(self.value(None))
                    if self.at(","):
                        self.next()
                self.expect(")")
                if type_ in WHOLE:
                    return int(args[0])
                if type_ in ("float64", "float32"):
                    return GoFloat(args[0])
                if type_ == "string":
                    return str(args[0])
                # A typed nil slice or map reads as an empty one (its length is 0, a key
                # finds nothing): JSON has no typed nil, so it is `[]` or `{}`.
                if type_.startswith("[]") and args == [None]:
                    return []
                if type_.startswith("map[") and args == [None]:
                    return {}
                return Call(type_, args)
            self.i = save
            self.next()
            name = text
            while self.at(".") and self.peek(1)[0] == "ident":
                self.next()
                name += "." + self.next()[1]
            return Call(name, None)
        raise SyntaxError(f"unexpected {text!r} at token {self.i}")


# --- eKuiper's operator inputs ---------------------------------------------------------------


def time_text(ms):
    """A time as Go's `encoding/json` writes a `time.Time` (RFC 3339 with the fraction's
    trailing zeros left out), as eKuiper's JSON sink sends it."""
    ms = int(ms)
    t = datetime.datetime.fromtimestamp(ms // 1000, tz=datetime.timezone.utc)
    fraction = f".{ms % 1000:03d}".rstrip("0").rstrip(".")
    return t.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def to_json(v):
    """A Go value as the JSON of the case format."""
    if isinstance(v, Call):
        if v.name == "cast.TimeFromUnixMilli":
            return {"$time": time_text(v.args[0])}
        if v.name == "cast.TNil":
            return None
        if v.name == "strings.ToLower":
            return to_json(v.args[0]).lower()
        if v.name == "str2Map":
            # join_test.go's helper: a JSON text decoded as Go's `encoding/json` decodes it
            # (every number a float64).
            return json.loads(v.args[0], parse_int=float)
        raise ValueError(f"cannot convert a call of {v.name}")
    if isinstance(v, GoFloat):
        return {"$float": "NaN"} if v != v else float(v)
    if isinstance(v, float):
        return v
    if isinstance(v, Struct):
        raise ValueError(f"cannot convert a {v.type} to a plain value")
    if isinstance(v, dict):
        return {k: to_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [to_json(x) for x in v]
    return v


def tuple_of(v):
    """An `xsql.Tuple` as `{"emitter", "row", "meta"?}`."""
    if not isinstance(v, Struct) or v.type not in ("xsql.Tuple",):
        raise ValueError(f"expected an xsql.Tuple, got {getattr(v, 'type', v)!r}")
    t = {"emitter": v.get("Emitter", ""), "row": to_json(v.get("Message") or {})}
    if v.get("Metadata"):
        t["meta"] = to_json(v["Metadata"])
    return t


def joined(v):
    """A row of a window: a tuple, or a join tuple (a list of tuples)."""
    if isinstance(v, Struct) and v.type == "xsql.JoinTuple":
        return [tuple_of(t) for t in v["Tuples"]]
    if isinstance(v, Struct) and v.type in ("xsql.JoinTuple", None) and "Tuples" in v:
        return [tuple_of(t) for t in v["Tuples"]]
    return [tuple_of(v)]


def window_range(v):
    if isinstance(v, Call) and v.name == "xsql.NewWindowRange":
        return [v.args[0], v.args[1]]
    raise ValueError(f"unexpected window range {v!r}")


def input_of(v):
    """The operator's input: `{"row": ...}`, `{"window": [...]}` or `{"groups": [...]}`."""
    if isinstance(v, Struct) and v.type == "xsql.Tuple":
        return {"row": tuple_of(v)}
    if isinstance(v, Struct) and v.type == "xsql.WindowTuples":
        out = {"window": [joined(r) for r in v["Content"]]}
        if "WindowRange" in v:
            out["range"] = window_range(v["WindowRange"])
        return out
    if isinstance(v, Struct) and v.type == "xsql.JoinTuples":
        out = {"window": [joined(r) for r in v["Content"]]}
        if "WindowRange" in v:
            out["range"] = window_range(v["WindowRange"])
        return out
    if isinstance(v, Struct) and v.type == "xsql.GroupedTuplesSet":
        groups, ranges = [], []
        for g in v["Groups"]:
            groups.append([joined(r) for r in g["Content"]])
            if "WindowRange" in g:
                ranges.append(window_range(g["WindowRange"]))
        out = {"groups": groups}
        if ranges and all(r == ranges[0] for r in ranges):
            out["range"] = ranges[0]
        elif ranges:
            # Oort's stages take one range per call: groups of several are kept for the record
            # (no statement of these tests reads them).
            out["group_ranges"] = ranges
        return out
    if isinstance(v, Call) and v.name == "errors.New":
        return {"error": v.args[0]}
    if isinstance(v, list):
        # The function tests hand the same operator one row after another (its state,
        # `changed_cols` or `lag`, carries from row to row).
        return {"sequence": [tuple_of(t) for t in v]}
    raise ValueError(f"unexpected operator input {getattr(v, 'type', v)!r}")


def result_of(v):
    """`{"result": [rows]}` or `{"error": text}`."""
    if isinstance(v, Call) and v.name == "errors.New":
        return {"error": v.args[0]}
    if isinstance(v, list):
        rows = []
        for r in v:
            row = {}
            for k, x in r.items():
                row[k] = to_json(dict(x) if isinstance(x, Struct) else x) if k == "__meta" else to_json(x)
            rows.append(row)
        return {"result": rows}
    raise ValueError(f"unexpected result {v!r}")


def kept_of(v):
    """A filter's result: `{"kept": [tuples]}` (what passed, in the input's shape: each a list
    of rows) or `{"error": text}`; `nil` is nothing kept."""
    if v is None:
        return {"kept": []}
    if isinstance(v, Call) and v.name == "errors.New":
        return {"error": v.args[0]}
    if isinstance(v, Struct) and v.type == "xsql.Tuple":
        return {"kept": [[tuple_of(v)]]}
    if isinstance(v, Struct) and v.type in ("xsql.WindowTuples", "xsql.JoinTuples"):
        return {"kept": [joined(r) for r in v["Content"]]}
    raise ValueError(f"unexpected filter result {getattr(v, 'type', v)!r}")


def group_list(v):
    return [[joined(r) for r in g["Content"]] for g in v["Groups"]]


def having_of(v):
    """A having operator's result: `{"kept": ...}`, the window's rows when the window (one
    group) passes, or the groups that pass; `nil` is nothing kept."""
    if v is None:
        return {"kept": []}
    if isinstance(v, Call) and v.name == "errors.New":
        return {"error": v.args[0]}
    if isinstance(v, Struct) and v.type == "xsql.Tuple":
        return {"kept": [[tuple_of(v)]]}
    if isinstance(v, Struct) and v.type in ("xsql.WindowTuples", "xsql.JoinTuples"):
        return {"kept": [joined(r) for r in v["Content"]]}
    if isinstance(v, Struct) and v.type == "xsql.GroupedTuplesSet":
        return {"kept": group_list(v)}
    raise ValueError(f"unexpected having result {getattr(v, 'type', v)!r}")


def sorted_of(v):
    """An order operator's result: `{"sorted": [...]}`, the rows, tuples or groups in order."""
    if isinstance(v, Call) and v.name == "errors.New":
        return {"error": v.args[0]}
    if isinstance(v, Struct) and v.type == "xsql.Tuple":
        return {"sorted": [[tuple_of(v)]]}
    if isinstance(v, Struct) and v.type in ("xsql.WindowTuples", "xsql.JoinTuples"):
        return {"sorted": [joined(r) for r in v["Content"]]}
    if isinstance(v, Struct) and v.type == "xsql.GroupedTuplesSet":
        return {"sorted": group_list(v)}
    raise ValueError(f"unexpected order result {getattr(v, 'type', v)!r}")


def joined_of(v):
    """A join operator's result: `{"joined": [...]}`, the joined tuples in order (each the rows
    it joins, in the order of the statement's sources), or `{"error": text}`; `nil` is no
    tuple."""
    if v is None:
        return {"joined": []}
    if isinstance(v, Call) and v.name == "errors.New":
        return {"error": v.args[0]}
    if isinstance(v, Struct) and v.type == "xsql.JoinTuples":
        return {"joined": [joined(r) for r in v.get("Content") or []]}
    raise ValueError(f"unexpected join result {getattr(v, 'type', v)!r}")


def function_result_of(name, c, data):
    """A function test's expectation: `result` (rows), `results` (the rows of each input of a
    sequence), `error` (the test's `err`), or `refused` (`math_func_test.go` writes `nil` for
    a statement eKuiper's parser refuses, and checks no text)."""
    if c.get("err"):
        return {"error": c["err"]}
    v = c.get("result")
    if isinstance(data, list):
        return {"results": [result_of(r)["result"] for r in v]}
    if v is None and name == "math_func":
        return {"refused": True}
    return result_of(v)


def analytic_sql(funcs):
    """The SQL an `AnalyticFuncsOp` built by hand stands for: each call a SELECT item named by
    its cache column (less the `$$`), or `None` when a call reads a slice tuple's position."""
    items = []
    for f in funcs:
        args = []
        for a in f.get("Args") or []:
            if a.type == "ast.FieldRef" and not a.get("HasIndex"):
                args.append(a["Name"])
            elif a.type == "ast.BooleanLiteral":
                args.append("true" if a["Val"] else "false")
            else:
                return None
        items.append(f"{f['Name']}({', '.join(args)}) AS {f['CachedField'].lstrip('$')}")
    return "SELECT " + ", ".join(items) + " FROM test"


def analytic_cases(func, cases):
    """`TestAnalyticFuncs` builds its operator by hand, with no SQL: each case becomes the
    statement it stands for, its cache columns the SELECT items' names (`send_nil`: the
    operator's columns hold `nil`)."""
    out, skipped = [], []
    for i, c in enumerate(cases):
        sql = analytic_sql(c["funcs"])
        if sql is None or not all(isinstance(d, Struct) and d.type == "xsql.Tuple" for d in c["data"]):
            skipped.append(i)
            continue
        results = [[{k.lstrip("$"): to_json(x) for k, x in r.items()}] for r in c["result"]]
        out.append({
            "go": func, "case": i, "sql": sql, "send_nil": True,
            "translated": "eKuiper's test builds the operator's calls by hand, with no SQL; "
            "this is the statement they stand for, each call's cache column its item's name",
            "input": input_of(c["data"]), "results": results,
        })
    return out, skipped


def groups_of(v):
    """An aggregate operator's result: `{"groups": [...]}`, each group a list of the window's
    rows or tuples (eKuiper's test matches groups in any order)."""
    if isinstance(v, Call) and v.name == "errors.New":
        return {"error": v.args[0]}
    if isinstance(v, Struct) and v.type == "xsql.GroupedTuplesSet":
        return {"groups": group_list(v)}
    raise ValueError(f"unexpected aggregate result {getattr(v, 'type', v)!r}")


# --- test functions ----------------------------------------------------------------------------


def test_tables(text):
    """Yields `(function, [case structs], options)` for each table-driven test function."""
    for m in re.finditer(r"^func (Test\w+)\(t \*testing\.T\) \{\n", text, re.M):
        name = m.group(1)
        body_end = text.find("\n}\n", m.end())
        body = text[m.end():body_end]
        tm = re.search(r"tests := \[\]struct \{", body)
        if not tm:
            yield name, None, {}
            continue
        p = Parser(lex(body[tm.start() + len("tests := "):]))
        type_ = p.parse_type()
        cases = p.composite("[]" + "case")
        options = {}
        rest = body[tm.start():]
        if "SendNil: true" in rest:
            options["send_nil"] = True
        if "parseStmtWithSlice" in rest:
            options["slice"] = True
        # The rule the test's context names: what `rule_id()` and `rule_start()` give.
        rule = re.search(r'WithMeta\("(\w+)"', rest)
        start = re.search(r"RuleStartKey, (\d+)\)", rest)
        if rule and start:
            options["rule"] = {"id": rule.group(1), "start": int(start.group(1))}
        yield name, cases, options


def source_text(root, rel):
    path = os.path.join(root, rel)
    if os.path.exists(path):
        with open(path) as f:
            return f.read()
    return subprocess.run(
        ["git", "--git-dir", root, "show", f"HEAD:{rel}"], check=True, capture_output=True, text=True
    ).stdout


def convert(root, name):
    rel = f"internal/topo/operator/{name}_test.go"
    text = source_text(root, rel)
    out = {"go_file": rel, "cases": [], "not_ported": []}
    for func, cases, options in test_tables(text):
        if cases is None:
            out["not_ported"].append({"go": func, "why": "not a table of SQL, input and result"})
            continue
        if options.get("slice"):
            out["not_ported"].append({
                "go": func,
                "why": "eKuiper's slice tuples (rows as positional values, an internal representation its planner chooses); "
                "the same statements over named fields are in the map tests",
            })
            continue
        if name == "agg_func_operator":
            out["not_ported"].append({
                "go": func,
                "why": "tests `AggFuncOp`, an operator eKuiper's planner adds for an aggregate in "
                "`WHERE`: it hands on each row with the aggregate's value in an internal column "
                "(`agg_ref_0`) that a later rewrite of `WHERE` reads; Oort has no such column",
            })
            continue
        if cases and "funcs" in cases[0]:
            ported, skipped = analytic_cases(func, cases)
            out["cases"].extend(ported)
            if skipped:
                out["not_ported"].append({
                    "go": func, "cases": skipped,
                    "why": "eKuiper's slice tuples (rows as positional values, an internal "
                    "representation its planner chooses); case 0 is the same calls over named fields",
                })
            continue
        for i, c in enumerate(cases):
            case = {"go": func, "case": i, "sql": c["sql"]}
            if options.get("send_nil"):
                case["send_nil"] = True
            if options.get("rule") and "rule_" in c["sql"]:
                case["rule"] = options["rule"]
            case.update({"input": input_of(c["data"])})
            if name == "filter":
                case.update(kept_of(c.get("result")))
            elif name == "having":
                case.update(having_of(c.get("result")))
            elif name == "order":
                case.update(sorted_of(c.get("result")))
            elif name == "aggregate":
                case.update(groups_of(c.get("result")))
            elif name in ("join", "join_multi"):
                case.update(joined_of(c.get("result")))
            elif name in FUNCTION_FILES:
                case.update(function_result_of(name, c, c["data"]))
            else:
                case.update(result_of(c["result"]))
            out["cases"].append(case)
    return out


def write(doc, path):
    """One case per line: the files stay readable and diffs small."""
    with open(path, "w") as f:
        f.write("{\n")
        f.write(f' "go_file": {json.dumps(doc["go_file"])},\n')
        if doc["not_ported"]:
            f.write(' "not_ported": [\n')
            f.write(",\n".join("  " + json.dumps(n) for n in doc["not_ported"]))
            f.write("\n ],\n")
        else:
            f.write(' "not_ported": [],\n')
        f.write(' "cases": [\n')
        f.write(",\n".join("  " + json.dumps(c) for c in doc["cases"]))
        f.write("\n ]\n}\n")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    root = sys.argv[1]
    names = sys.argv[2:] or [
        "project", "filter", "having", "order", "aggregate",
        "str_func", "math_func", "misc_func", "cols_func", "analyticfuncs_operator",
        "agg_func_operator", "join", "join_multi",
    ]
    if "windowfunc_operator" in names:
        # Its operators and windows are Go variables, not a table: the cases are translated
        # by hand in windowfunc_operator.json, which this script leaves alone.
        sys.exit("windowfunc_operator.json is written by hand")
    for name in names:
        doc = convert(root, name)
        path = os.path.join(HERE, f"{name}.json")
        write(doc, path)
        print(f"{path}: {len(doc['cases'])} cases, {len(doc['not_ported'])} tests not ported")


if __name__ == "__main__":
    main()
