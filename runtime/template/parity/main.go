// Command parity renders the cases of the template engine's Go parity tests with Go's
// text/template and the functions eKuiper registers for data templates (sprig v3, plus `json`
// and `base64`), and compares Go's output with the expected output written in the tests.
//
// It reads the tables of ../src/tests/go_parity.rs (each `check(DATA, &[(template, want), ...])`
// or `check_err(...)` call) and the data constants of ../src/tests/mod.rs, and lists every case
// where Go disagrees. With -fill it writes Go's output into the cases whose expected output is
// empty, so a new case can be added as ("template", "") and filled in.
//
// Go reports a parse error with its line but no column; those cases are compared without the
// column (the tables give the column of the offending token) and never filled in.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"unicode/utf8"
)

func main() {
	dir := flag.String("tests", filepath.Join("..", "src", "tests"), "folder of go_parity.rs and mod.rs")
	write := flag.Bool("fill", false, "write Go's output into the cases whose expected output is empty")
	flag.Parse()
	if err := run(*dir, *write); err != nil {
		fmt.Fprintln(os.Stderr, "parity:", err)
		os.Exit(1)
	}
}

func run(dir string, write bool) error {
	modSrc, err := os.ReadFile(filepath.Join(dir, "mod.rs"))
	if err != nil {
		return err
	}
	data, err := dataConstants(modSrc)
	if err != nil {
		return err
	}
	parityPath := filepath.Join(dir, "go_parity.rs")
	src, err := os.ReadFile(parityPath)
	if err != nil {
		return err
	}
	tables, err := parseTables(src)
	if err != nil {
		return err
	}
	type edit struct {
		start, end int
		text       string
	}
	var edits []edit
	cases, differ, kept, skipped := 0, 0, 0, 0
	for _, table := range tables {
		text, ok := data[table.data]
		if !ok {
			return fmt.Errorf("%s: no data constant %s in mod.rs", table.test, table.data)
		}
		dot, err := decode(text)
		if err != nil {
			return fmt.Errorf("%s: data %s: %w", table.test, table.data, err)
		}
		for _, c := range table.cases {
			cases++
			got, isErr, col := render(c.template, dot)
			if !withSprig && isErr && needsSprig(got) && !strings.Contains(c.want, got) {
				skipped++
				continue
			}
			same := false
			switch {
			case isErr != table.wantErr:
			case isErr && !col:
				same = withoutColumn(c.want) == got
			default:
				same = c.want == got
			}
			if same {
				continue
			}
			differ++
			kind := "output"
			if isErr {
				kind = "error"
			}
			fmt.Printf("%s: %q\n   want %q\n  go %s %q\n", table.test, c.template, c.want, kind, got)
			if c.want != "" || isErr != table.wantErr || (isErr && !col) {
				kept++
				continue
			}
			edits = append(edits, edit{c.wantStart, c.wantEnd, rustString(got)})
		}
	}
	fmt.Printf("%d cases in %d tables, %d differ from Go", cases, len(tables), differ)
	if skipped > 0 {
		fmt.Printf(", %d skipped: they call sprig functions (build with -tags sprig)", skipped)
	}
	fmt.Println()
	if !write {
		if differ > 0 {
			return fmt.Errorf("%d cases differ from Go", differ)
		}
		return nil
	}
	out := src
	for i := len(edits) - 1; i >= 0; i-- {
		e := edits[i]
		out = append(out[:e.start:e.start], append([]byte(e.text), out[e.end:]...)...)
	}
	if len(edits) > 0 {
		if err := os.WriteFile(parityPath, out, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("filled in %d expected outputs; %d differences left for a person to judge\n", len(edits), kept)
	return nil
}

// funcs are the functions eKuiper registers for data templates: sprig's (see sprig.go),
// `json` as sprig's `toJson`, and `base64`.
func funcs() template.FuncMap {
	m := sprigFuncs()
	m["json"] = m["toJson"]
	m["base64"] = ekuiperBase64
	return m
}

// ekuiperBase64 is eKuiper's `base64`: the value's text (JSON for a map) in standard base64.
func ekuiperBase64(v interface{}) (string, error) {
	r := reflect.ValueOf(v)
	if !r.IsValid() {
		return "", fmt.Errorf("based64 error for nil")
	}
	var text []byte
	switch r.Kind() {
	case reflect.Bool:
		text = []byte(strconv.FormatBool(r.Bool()))
	case reflect.Int, reflect.Int64:
		text = []byte(strconv.FormatInt(r.Int(), 10))
	case reflect.Uint64:
		text = []byte(strconv.FormatUint(r.Uint(), 10))
	case reflect.Float32:
		text = []byte(strconv.FormatFloat(r.Float(), 'f', -1, 32))
	case reflect.Float64:
		text = []byte(strconv.FormatFloat(r.Float(), 'f', -1, 64))
	case reflect.String:
		text = []byte(r.String())
	case reflect.Map:
		j, err := json.Marshal(v)
		if err != nil {
			return "", err
		}
		text = j
	default:
		return "", fmt.Errorf("Unsupported data type %s for base64 function.", r.Kind())
	}
	return base64.StdEncoding.EncodeToString(text), nil
}

var (
	errPrefix = regexp.MustCompile(`^template: [^:]*:`)
	execName  = regexp.MustCompile(`executing "[^"]*" at <`)
	lineCol   = regexp.MustCompile(`^(\d+):\d+: `)
	lineOnly  = regexp.MustCompile(`^\d+: `)
	lineByte  = regexp.MustCompile(`^(\d+):(\d+): `)
)

// render runs one template; on error it returns the message in the tables' form
// (`line:col: executing at <action>: ...` or, for parse errors, `line: ...`) and whether it
// has a column.
func render(text string, dot interface{}) (out string, isErr bool, col bool) {
	t, err := template.New("parity").Funcs(funcs()).Parse(text)
	if err == nil {
		var buf bytes.Buffer
		if err = t.Execute(&buf, dot); err == nil {
			return buf.String(), false, false
		}
	}
	msg := errPrefix.ReplaceAllString(err.Error(), "")
	msg = execName.ReplaceAllString(msg, "executing at <")
	if lineOnly.MatchString(msg) {
		return msg, true, false
	}
	return oneBasedColumn(text, msg), true, true
}

// oneBasedColumn rewrites Go's `line:byte:` position (the byte offset in the line, from 0)
// as the tables give it: `line:column:`, the column in characters from 1.
func oneBasedColumn(text, msg string) string {
	m := lineByte.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	line, _ := strconv.Atoi(m[1])
	offset, _ := strconv.Atoi(m[2])
	lines := strings.SplitN(text, "\n", line+1)
	if line < 1 || line > len(lines) || offset > len(lines[line-1]) {
		return msg
	}
	col := utf8.RuneCountInString(lines[line-1][:offset]) + 1
	return fmt.Sprintf("%d:%d: %s", line, col, msg[len(m[0]):])
}

var notDefined = regexp.MustCompile(`^\d+: function "[^"]*" not defined$`)

// needsSprig tells whether a parse error is a call of a function only sprig defines.
func needsSprig(msg string) bool {
	return notDefined.MatchString(msg)
}

// withoutColumn turns `line:col: msg` into `line: msg`.
func withoutColumn(s string) string {
	return lineCol.ReplaceAllString(s, "$1: ")
}

// decode reads test data as eKuiper rows reach a template here: objects are
// map[string]interface{}, whole numbers int64 and other numbers float64.
func decode(text string) (interface{}, error) {
	d := json.NewDecoder(strings.NewReader(text))
	d.UseNumber()
	var v interface{}
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return numbers(v), nil
}

func numbers(v interface{}) interface{} {
	switch x := v.(type) {
	case json.Number:
		if !strings.ContainsAny(string(x), ".eE") {
			if i, err := x.Int64(); err == nil {
				return i
			}
		}
		f, _ := x.Float64()
		return f
	case []interface{}:
		for i := range x {
			x[i] = numbers(x[i])
		}
	case map[string]interface{}:
		for k := range x {
			x[k] = numbers(x[k])
		}
	}
	return v
}

// rustString writes s as a Rust string literal.
func rustString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '"':
			b.WriteString(`\"`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == 0:
			b.WriteString(`\0`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u{%x}`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
