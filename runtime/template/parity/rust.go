package main

// Just enough of Rust's lexical syntax to read the parity tables: comments, identifiers,
// punctuation and string literals (plain with escapes, and raw).

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

type tokKind int

const (
	tokIdent tokKind = iota
	tokString
	tokPunct
)

type token struct {
	kind       tokKind
	text       string // identifier, punctuation, or the string's value
	start, end int    // byte span in the source
}

// table is one `check(DATA, &[...])` or `check_err(DATA, &[...])` call.
type table struct {
	test    string // the enclosing test function
	data    string // the data constant's name
	wantErr bool
	cases   []tableCase
}

type tableCase struct {
	template, want     string
	wantStart, wantEnd int // span of the expected output's literal
}

func lex(src []byte) ([]token, error) {
	var toks []token
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == '/' && i+1 < len(src) && src[i+1] == '/':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			end := strings.Index(string(src[i+2:]), "*/")
			if end < 0 {
				return nil, fmt.Errorf("unclosed comment at byte %d", i)
			}
			i += end + 4
		case c == '"':
			value, end, err := plainString(src, i)
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{tokString, value, i, end})
			i = end
		case c == 'r' && i+1 < len(src) && (src[i+1] == '"' || src[i+1] == '#'):
			value, end, err := rawString(src, i)
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{tokString, value, i, end})
			i = end
		case c == '_' || c < utf8.RuneSelf && unicode.IsLetter(rune(c)):
			start := i
			for i < len(src) && (src[i] == '_' || src[i] < utf8.RuneSelf && (unicode.IsLetter(rune(src[i])) || unicode.IsDigit(rune(src[i])))) {
				i++
			}
			toks = append(toks, token{tokIdent, string(src[start:i]), start, i})
		case c == ' ' || c == '\n' || c == '\t' || c == '\r':
			i++
		default:
			toks = append(toks, token{tokPunct, string(c), i, i + 1})
			i++
		}
	}
	return toks, nil
}

// plainString reads "..." starting at src[at].
func plainString(src []byte, at int) (string, int, error) {
	var b strings.Builder
	i := at + 1
	for i < len(src) {
		c := src[i]
		switch c {
		case '"':
			return b.String(), i + 1, nil
		case '\\':
			if i+1 >= len(src) {
				break
			}
			e := src[i+1]
			i += 2
			switch e {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case '0':
				b.WriteByte(0)
			case '\\', '"', '\'':
				b.WriteByte(e)
			case 'x':
				n, err := strconv.ParseUint(string(src[i:i+2]), 16, 8)
				if err != nil {
					return "", 0, fmt.Errorf("bad \\x escape at byte %d", i)
				}
				b.WriteByte(byte(n))
				i += 2
			case 'u':
				end := strings.IndexByte(string(src[i:]), '}')
				if src[i] != '{' || end < 0 {
					return "", 0, fmt.Errorf("bad \\u escape at byte %d", i)
				}
				n, err := strconv.ParseUint(string(src[i+1:i+end]), 16, 32)
				if err != nil {
					return "", 0, fmt.Errorf("bad \\u escape at byte %d", i)
				}
				b.WriteRune(rune(n))
				i += end + 1
			case '\n':
				for i < len(src) && (src[i] == ' ' || src[i] == '\n' || src[i] == '\t' || src[i] == '\r') {
					i++
				}
			default:
				return "", 0, fmt.Errorf("unknown escape \\%c at byte %d", e, i-2)
			}
			continue
		}
		b.WriteByte(c)
		i++
	}
	return "", 0, fmt.Errorf("unterminated string at byte %d", at)
}

// rawString reads r"..." or r#"..."# (any number of #) starting at src[at].
func rawString(src []byte, at int) (string, int, error) {
	i := at + 1
	hashes := 0
	for i < len(src) && src[i] == '#' {
		hashes++
		i++
	}
	if i >= len(src) || src[i] != '"' {
		return "", 0, fmt.Errorf("bad raw string at byte %d", at)
	}
	closing := "\"" + strings.Repeat("#", hashes)
	end := strings.Index(string(src[i+1:]), closing)
	if end < 0 {
		return "", 0, fmt.Errorf("unterminated raw string at byte %d", at)
	}
	return string(src[i+1 : i+1+end]), i + 1 + end + len(closing), nil
}

// parseTables finds every check and check_err call and its (template, want) pairs.
func parseTables(src []byte) ([]table, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	var tables []table
	test := ""
	for i := 0; i+3 < len(toks); i++ {
		t := toks[i]
		if t.kind == tokIdent && t.text == "fn" && toks[i+1].kind == tokIdent {
			test = toks[i+1].text
			continue
		}
		if t.kind != tokIdent || (t.text != "check" && t.text != "check_err") || toks[i+1].text != "(" {
			continue
		}
		if toks[i+2].kind != tokIdent {
			return nil, fmt.Errorf("%s: the data of a table must be a constant", test)
		}
		tb := table{test: test, data: toks[i+2].text, wantErr: t.text == "check_err"}
		depth := 0
		j := i + 1
		for ; j < len(toks); j++ {
			switch toks[j].text {
			case "(", "[":
				if toks[j].kind == tokPunct {
					depth++
				}
			case ")", "]":
				if toks[j].kind == tokPunct {
					depth--
				}
			}
			if depth == 0 {
				break
			}
			// A case: ( "template" , "want" ,? )
			if toks[j].kind == tokPunct && toks[j].text == "(" && j+4 < len(toks) &&
				toks[j+1].kind == tokString && toks[j+2].text == "," && toks[j+3].kind == tokString {
				w := toks[j+3]
				tb.cases = append(tb.cases, tableCase{toks[j+1].text, w.text, w.start, w.end})
			}
		}
		tables = append(tables, tb)
		i = j
	}
	return tables, nil
}

// dataConstants reads `const NAME: &str = "...";` items.
func dataConstants(src []byte) (map[string]string, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for i := 0; i+6 < len(toks); i++ {
		if toks[i].kind == tokIdent && toks[i].text == "const" && toks[i+1].kind == tokIdent &&
			toks[i+2].text == ":" && toks[i+3].text == "&" && toks[i+4].text == "str" &&
			toks[i+5].text == "=" && toks[i+6].kind == tokString {
			out[toks[i+1].text] = toks[i+6].text
		}
	}
	return out, nil
}
