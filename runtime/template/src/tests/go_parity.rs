//! Cases whose expected output was produced by Go's `text/template` with the sprig
//! functions (as eKuiper registers them), checked against this engine.

use super::{DOC1, DOC2, NULL_DATA, ROW, ROWS, check, check_err};

#[test]
fn text_and_fields() {
    check(
        ROW,
        &[
            ("", ""),
            ("plain text, no actions", "plain text, no actions"),
            ("{{.ab}}", "hello"),
            (
                "{{.}}",
                "map[ab:hello arr:[1 x <nil> map[q:1.5]] big:9007199254740993 e: ea:[] eo:map[] f:2.5 f1:1e+06 f2:1e-05 f3:1e+21 f4:123456 f5:-0 f6:1 f7:1.234567e+06 fl:false i:7 m:map[a:1 b:2 c:map[d:deep]] n:<nil> neg:-3 nums:[3 1 2] s:a<b>&\"cé\n strs:[b a c] t:true t_av:36.25]",
            ),
            ("{{.missing}}", "<no value>"),
            ("{{.n}}", "<no value>"),
            ("{{.m.c.d}}", "deep"),
            ("{{.m.zz.d}}", "<no value>"),
            (
                "{{$}}",
                "map[ab:hello arr:[1 x <nil> map[q:1.5]] big:9007199254740993 e: ea:[] eo:map[] f:2.5 f1:1e+06 f2:1e-05 f3:1e+21 f4:123456 f5:-0 f6:1 f7:1.234567e+06 fl:false i:7 m:map[a:1 b:2 c:map[d:deep]] n:<nil> neg:-3 nums:[3 1 2] s:a<b>&\"cé\n strs:[b a c] t:true t_av:36.25]",
            ),
            ("{{$.ab}}", "hello"),
            ("{{.m.a}}{{.m.b}}", "12"),
            (
                "{{.arr}} {{.ea}} {{.eo}}",
                "[1 x <nil> map[q:1.5]] [] map[]",
            ),
            ("{{(.m).a}}", "1"),
            ("{{(.n).x}}", "<no value>"),
            ("{{(dict \"a\" 5).a}}", "5"),
            ("{{.ab}}}}", "hello}}"),
            ("{{\"{{\"}}{{\"}}\"}}", "{{}}"),
            ("{{`}}`}}", "}}"),
        ],
    );
}

#[test]
fn rows_and_null_data() {
    check(
        ROWS,
        &[
            ("{{.}}", "[map[ab:hello1] map[ab:hello2]]"),
            ("{{len .}}", "2"),
            (
                "{{range $i, $r := .}}{{$i}}:{{$r.ab}} {{end}}",
                "0:hello1 1:hello2 ",
            ),
        ],
    );
}

#[test]
fn null_data() {
    check(
        NULL_DATA,
        &[(
            "{{.}}|{{.a}}|{{print .}}|{{toJson .}}",
            "<no value>|<no value>|<nil>|null",
        )],
    );
}

#[test]
fn trim_markers_and_comments() {
    check(
        ROW,
        &[
            ("a  {{- .ab -}}  b", "ahellob"),
            ("a {{- .ab}} b", "ahello b"),
            ("a {{.ab -}} \n\t b", "a hellob"),
            ("a\n{{- \"x\" -}}\nb", "axb"),
            ("{{-3}}", "-3"),
            ("{{- -3}}", "-3"),
            ("{{3 -}} x", "3x"),
            ("a{{-\t.ab\t-}}b", "ahellob"),
            ("a{{-\n.ab\n-}}b", "ahellob"),
            ("{{1 -}}\n\n{{- 2}}", "12"),
            ("{{if .t -}}\n  yes\n{{- end}}", "yes"),
            ("{{range .nums -}}\n {{.}}\n{{- end}}", "312"),
            ("x {{/* comment */}} y", "x  y"),
            ("x {{- /* c */ -}} y", "xy"),
            ("a {{- /* c */}} b", "a b"),
            ("a {{/* c */ -}} b", "a b"),
            ("{{/* multi\nline */}}ok", "ok"),
            ("a{{/* {{ }} */}}b", "ab"),
            ("{{/**/}}", ""),
        ],
    );
}

#[test]
fn literals() {
    check(
        ROW,
        &[
            (
                "{{\"str\"}} {{`raw\\n`}} {{true}} {{false}}",
                "str raw\\n true false",
            ),
            (
                "{{1}} {{1.5}} {{1e3}} {{0x10}} {{0o17}} {{0b101}} {{017}} {{1_000}} {{-0x1e}} {{.5}} {{1.}} {{+5}}",
                "1 1.5 1000 16 15 5 15 1000 -30 0.5 1 5",
            ),
            (
                "{{'a'}} {{'\\n'}} {{'\\x41'}} {{'\\u00e9'}} {{'\\377'}} {{'\\''}}",
                "97 10 65 233 255 39",
            ),
            ("{{\"\\u00e9\\x41\\101\\t|\"}}", "éAA\t|"),
            (
                "{{0x1p-2}} {{1e100}} {{9223372036854775807}}",
                "0.25 1e+100 9223372036854775807",
            ),
            ("{{1.0}} {{2.50}} {{1e6}} {{1e-5}}", "1 2.5 1e+06 1e-05"),
            ("{{ \"a\" }}x{{ 'b' }}", "ax98"),
        ],
    );
}

#[test]
fn variables() {
    check(
        ROW,
        &[
            ("{{$x := .ab}}{{$x}}", "hello"),
            ("{{$x := 1}}{{$x = 2}}{{$x}}", "2"),
            ("{{$x := .m}}{{$x.c.d}}", "deep"),
            ("{{$x := 0}}{{range .nums}}{{$x = .}}{{end}}{{$x}}", "2"),
            ("{{$x := 5}}{{range .nums}}{{$x := .}}{{end}}{{$x}}", "5"),
            ("{{$ := 1}}{{$}}", "1"),
            ("{{print ($x := 5) $x}}{{$x}}", "5 55"),
            ("{{if .t}}{{$x := 1}}{{else}}{{$x}}{{end}}", ""),
            ("{{$x := 0}}{{if .fl}}{{$x := 1}}{{else}}{{$x}}{{end}}", "0"),
            (
                "{{$a := 1}}{{$b := 2}}{{$a}}{{$b}}{{if true}}{{$c := 3}}{{$a = 10}}{{$c}}{{end}}{{$a}}",
                "12310",
            ),
            ("{{$x := .missing}}{{$x}}", "<no value>"),
            ("{{range .nums}}{{$.ab}}{{end}}", "hellohellohello"),
            ("{{$x := .m}}{{$x.zz.y}}", "<no value>"),
        ],
    );
}

#[test]
fn if_else() {
    check(
        ROW,
        &[
            ("{{if .t}}yes{{end}}", "yes"),
            ("{{if .fl}}yes{{else}}no{{end}}", "no"),
            ("{{if .n}}y{{else if .i}}i{{else}}z{{end}}", "i"),
            (
                "{{if .e}}a{{else if .ea}}b{{else if .eo}}c{{else if .missing}}d{{else if 0}}e{{else if 0.0}}f{{else}}g{{end}}",
                "g",
            ),
            (
                "{{if .ab}}s{{end}}{{if .arr}}a{{end}}{{if .m}}m{{end}}{{if .neg}}n{{end}}{{if .f}}f{{end}}",
                "samnf",
            ),
            ("{{if and .t (not .fl)}}ok{{end}}", "ok"),
            ("{{if or .e .n}}x{{else}}y{{end}}", "y"),
            ("{{if eq .ab \"hello\" \"x\"}}m{{end}}", "m"),
            ("{{if gt (len .nums) 2}}many{{end}}", "many"),
            ("{{if .missing}}x{{end}}|", "|"),
        ],
    );
}

#[test]
fn with() {
    check(
        ROW,
        &[
            ("{{with .missing}}a{{else}}b{{end}}", "b"),
            ("{{with .m}}{{.a}}{{end}}", "1"),
            ("{{with $x := .m}}{{$x.a}}{{.b}}{{end}}", "12"),
            ("{{with .e}}x{{end}}|", "|"),
            (
                "{{with .m}}{{range $k, $v := .}}{{$k}}{{$v}}{{end}}{{end}}",
                "a1b2cmap[d:deep]",
            ),
            ("{{with $x := dict \"a\" 1}}{{$x.a}}{{end}}", "1"),
        ],
    );
}

#[test]
fn range() {
    check(
        ROW,
        &[
            ("{{range .nums}}{{.}}{{end}}", "312"),
            (
                "{{range $i, $e := .arr}}{{$i}}={{$e}};{{end}}",
                "0=1;1=x;2=<no value>;3=map[q:1.5];",
            ),
            ("{{range $e := .nums}}{{$e}}{{end}}", "312"),
            (
                "{{range $k, $v := .m}}{{$k}}={{$v}};{{end}}",
                "a=1;b=2;c=map[d:deep];",
            ),
            ("{{range .m}}{{.}}{{end}}", "12map[d:deep]"),
            ("{{range .ea}}x{{else}}empty{{end}}", "empty"),
            ("{{range .missing}}x{{else}}none{{end}}", "none"),
            (
                "{{range .arr}}[{{.}}]{{end}}",
                "[1][x][<no value>][map[q:1.5]]",
            ),
            (
                "{{range $i, $e := .nums}}{{$i}}{{$e}}{{else}}none{{end}}",
                "031122",
            ),
            (
                "{{range .nums}}{{if eq . 1}}{{continue}}{{end}}{{.}}{{end}}",
                "32",
            ),
            (
                "{{range .nums}}{{if eq . 1}}{{break}}{{end}}{{.}}{{end}}",
                "3",
            ),
            (
                "{{range $i, $v := .nums}}{{if $i}},{{end}}{{$v}}{{end}}",
                "3,1,2",
            ),
            (
                "{{range $i, $e := list \"a\" \"b\"}}{{$i}}{{$e}}{{end}}",
                "0a1b",
            ),
            ("{{range (dict \"b\" 1 \"a\" 2)}}{{.}}{{end}}", "21"),
            (
                "{{$i := 9}}{{$e := 8}}{{range $i, $e = .nums}}{{end}}{{$i}}{{$e}}",
                "22",
            ),
            (
                "{{range .arr}}{{printf \"%v;\" .}}{{end}}",
                "1;x;<nil>;map[q:1.5];",
            ),
        ],
    );
}

#[test]
fn define_template_block() {
    check(
        ROW,
        &[
            (
                "{{define \"t\"}}[{{.}}|{{$}}]{{end}}{{template \"t\" .ab}}",
                "[hello|hello]",
            ),
            ("{{define \"t\"}}x{{end}}{{template \"t\"}}", "x"),
            ("{{block \"b\" .ab}}<{{.}}>{{end}}", "<hello>"),
            (
                "{{define \"t\"}}{{.}}{{end}}{{range .nums}}{{template \"t\" .}}{{end}}",
                "312",
            ),
            (
                "{{define \"r\"}}{{if .}}{{index . 0}}{{template \"r\" (rest .)}}{{end}}{{end}}{{template \"r\" .nums}}",
                "312",
            ),
            (
                "{{define \"a\"}}1{{end}}{{define \"a\"}} {{end}}{{template \"a\"}}",
                "1",
            ),
            (
                "{{define \"a\"}} {{end}}{{define \"a\"}}2{{end}}{{template \"a\"}}",
                "2",
            ),
            (
                "{{define \"t\"}}{{$x := 1}}{{$x}}{{end}}{{$x := 2}}{{template \"t\"}}{{$x}}",
                "12",
            ),
            ("{{template \"t\" .}}{{define \"t\"}}late{{end}}", "late"),
            (
                "{{define \"t\"}}{{.}}{{end}}{{template \"t\" .missing}}",
                "<no value>",
            ),
            (
                "{{template \"t\" (dict \"x\" 1)}}{{define \"t\"}}{{.x}}{{end}}",
                "1",
            ),
        ],
    );
}

#[test]
fn printing_values_like_go() {
    check(
        ROW,
        &[
            (
                "{{.i}} {{.f}} {{.big}} {{.neg}} {{.t}} {{.fl}}",
                "7 2.5 9007199254740993 -3 true false",
            ),
            (
                "{{.f1}} {{.f2}} {{.f3}} {{.f4}} {{.f5}} {{.f6}} {{.f7}} {{.t_av}}",
                "1e+06 1e-05 1e+21 123456 -0 1 1.234567e+06 36.25",
            ),
            ("{{.m}}", "map[a:1 b:2 c:map[d:deep]]"),
            ("{{.arr}}", "[1 x <nil> map[q:1.5]]"),
            (
                "{{print .arr .m}}",
                "[1 x <nil> map[q:1.5]] map[a:1 b:2 c:map[d:deep]]",
            ),
            (
                "{{printf \"%v %v %v\" 1e20 1.5e300 -2.5e-300}}",
                "1e+20 1.5e+300 -2.5e-300",
            ),
            (
                "{{0.1}} {{100000.0}} {{1e-4}} {{-1.5e-7}}",
                "0.1 100000 0.0001 -1.5e-07",
            ),
        ],
    );
}

#[test]
fn builtin_logic() {
    check(
        ROW,
        &[
            (
                "{{and 1 0 2}} {{and 1 2}} {{or 0 \"\" \"x\"}} {{or 0 \"\"}} {{not .t}} {{not .missing}} {{and .missing 1}}",
                "0 2 x  false true <no value>",
            ),
            ("{{1 | and 0}} {{0 | or 0}} {{1 | and 2}}", "0 0 1"),
            (
                "{{and 0 (index .missing 1)}} {{or 1 (index .missing 1)}}",
                "0 1",
            ),
            (
                "{{not 0}} {{not \"\"}} {{not .arr}} {{not .m}} {{not nil}}",
                "true true false false true",
            ),
        ],
    );
}

#[test]
fn builtin_len_index_slice() {
    check(
        ROW,
        &[
            (
                "{{len .ab}} {{len .arr}} {{len .m}} {{len .ea}} {{len \"é\"}} {{len list}}",
                "5 4 3 0 2 0",
            ),
            (
                "{{index .arr 1}} {{index .arr 3 \"q\"}} {{index .m \"c\" \"d\"}} {{index .ab 0}} {{index .m \"zz\"}} {{index .}}",
                "x 1.5 deep 104 <no value> map[ab:hello arr:[1 x <nil> map[q:1.5]] big:9007199254740993 e: ea:[] eo:map[] f:2.5 f1:1e+06 f2:1e-05 f3:1e+21 f4:123456 f5:-0 f6:1 f7:1.234567e+06 fl:false i:7 m:map[a:1 b:2 c:map[d:deep]] n:<nil> neg:-3 nums:[3 1 2] s:a<b>&\"cé\n strs:[b a c] t:true t_av:36.25]",
            ),
            ("{{index .nums (sub (len .nums) 1)}}", "2"),
            (
                "{{index (list 1 (list 2 3)) 1 0}} {{index (dict \"a\" (list 5)) \"a\" 0}}",
                "2 5",
            ),
            (
                "{{(index .arr 3).q}} {{index .arr 3 | printf \"%v\"}}",
                "1.5 map[q:1.5]",
            ),
            (
                "{{slice .nums 1}} {{slice .nums 1 2}} {{slice .nums 0 0}}",
                "[1 2] [1] []",
            ),
        ],
    );
}

#[test]
fn builtin_print_and_escapers() {
    check(
        ROW,
        &[
            ("{{print 1 2 \"a\" \"b\" 3 .t .t}}", "1 2ab3 true true"),
            ("{{print}}|{{print .missing .n nil}}", "|<nil> <nil> <nil>"),
            ("{{println 1 \"a\" 2}}", "1 a 2\n"),
            ("{{println}}", "\n"),
            (
                "{{print 1 2}} {{print \"a\" 1 \"b\"}} {{print 1 \"a\" 2}} {{print nil 1}} {{print 1.5 2.5}}",
                "1 2 a1b 1a2 <nil> 1 1.5 2.5",
            ),
            (
                "{{html .s}} {{html .missing}} {{html .n 1 2 \"a\"}} {{html 1 2}}",
                "a&lt;b&gt;&amp;&#34;cé\n &lt;no value&gt; &lt;no value&gt;1 2a 1 2",
            ),
            (
                "{{js .s}} {{js \"'\\\\=\\u0001\"}} {{js \"\\u00e9\\u200b\\t\"}}",
                "a\\u003Cb\\u003E\\u0026\\\"cé\\u000A \\'\\\\\\u003D\\u0001 é\\u200B\\u0009",
            ),
            (
                "{{urlquery .s}} {{urlquery \"a b&c=d/é~_.-\"}}",
                "a%3Cb%3E%26%22c%C3%A9%0A a+b%26c%3Dd%2F%C3%A9~_.-",
            ),
            (
                "{{html \"<a href=\\\"x\\\">&'</a>\"}}",
                "&lt;a href=&#34;x&#34;&gt;&amp;&#39;&lt;/a&gt;",
            ),
        ],
    );
}

#[test]
fn builtin_comparisons() {
    check(
        ROW,
        &[
            (
                "{{eq 1 1}} {{eq 1 2}} {{eq 1 2 1}} {{eq \"a\" \"a\"}} {{eq .t true}} {{eq nil nil}} {{eq .missing nil}} {{eq .missing 1}} {{eq .n .n}} {{eq .n 1}}",
                "true false true true true true true false true false",
            ),
            (
                "{{ne 1 2}} {{ne \"a\" \"a\"}} {{lt 1 2}} {{le 2 2}} {{gt 3 2}} {{ge 1 2}} {{lt \"a\" \"b\"}} {{ge \"b\" \"a\"}} {{lt -1 0}}",
                "true false true true true false true true true",
            ),
            (
                "{{eq .i 7}} {{eq .ab \"hello\"}} {{ne .n nil}} {{eq .missing .n}} {{lt .i 8}} {{lt .f 2.6}} {{gt .ab \"a\"}} {{le .i 7}} {{ge .f 2.5}}",
                "true true false true true true true true true",
            ),
        ],
    );
}

#[test]
fn printf_verbs() {
    check(
        ROW,
        &[
            (
                "{{printf \"%d-%s-%v-%q-%t\" 42 \"s\" .m \"q\" true}}",
                "42-s-map[a:1 b:2 c:map[d:deep]]-\"q\"-true",
            ),
            (
                "{{printf \"%5.2f|%-6d|%06d|%x|%X|%o|%b|%c|%U|%e|%g\" 3.14159 7 -7 255 255 8 5 65 65 1234.5678 0.00001}}",
                " 3.14|7     |-00007|ff|FF|10|101|A|U+0041|1.234568e+03|1e-05",
            ),
            ("{{printf \"%d\"}}", "%!d(MISSING)"),
            ("{{printf \"%\"}}", "%!(NOVERB)"),
            (
                "{{printf \"%s\" .m}}",
                "map[a:%!s(int64=1) b:%!s(int64=2) c:map[d:deep]]",
            ),
            ("{{printf \"%v %v\" .n .missing}}", "<nil> <nil>"),
            ("{{printf \"%s\" nil}}", "%!s(<nil>)"),
            (
                "{{printf \"%.3s|%8s|%-8s|%q\" \"abcdef\" \"ab\" \"é\" \"\\u00e9\\n\"}}",
                "abc|      ab|é       |\"é\\n\"",
            ),
            (
                "{{printf \"%6.2f|%-8.3e|%08.3f|%+.1f|% .1f|%+d\" 3.14159 1234.5 -3.14159 1.0 1.0 5}}",
                "  3.14|1.234e+03|-003.142|+1.0| 1.0|+5",
            ),
            (
                "{{printf \"%x %X %#x %#o %#b\" -255 \"hi\" 255 8 5}}",
                "-ff 6869 0xff 010 0b101",
            ),
            (
                "{{printf \"%5t|%-7v|%T|%T|%T|%T\" true nil .i .f .m .arr}}",
                " true|<nil>  |int64|float64|map[string]interface {}|[]interface {}",
            ),
            (
                "{{printf \"%v|%10.3v|%.0f %.1f %.2f\" 100000000.0 3.14159 2.5 0.05 1.005}}",
                "1e+08|      3.14|2 0.1 1.00",
            ),
            ("{{printf \"%[2]d %[1]d\" 1 2}}", "2 1"),
            (
                "{{printf \"%*d|%-*d|%.*f\" 4 1 4 2 2 3.14159}}",
                "   1|2   |3.14",
            ),
            (
                "{{printf \"%3c|%-4q|%#q|%+q\" 65 \"a\" \"b\" \"é\"}}",
                "  A|\"a\" |`b`|\"\\u00e9\"",
            ),
            ("{{printf \"%.0d|%.3d|%+08d\" 0 7 42}}", "|007|+0000042"),
            ("{{printf \"%x %X\" 3.5 -1.0}}", "0x1.cp+01 -0X1P+00"),
            (
                "{{printf \"%s %d\" .arr .nums}}",
                "[%!s(int64=1) x <nil> map[q:%!s(float64=1.5)]] [3 1 2]",
            ),
            ("{{printf \"%%|%c\" 0x1F600}}", "%|😀"),
            ("{{printf \"%.2f\" .t_av}}", "36.25"),
            (
                "{{printf \"%08.2f|%-8.2f|%8.2f\" -3.5 -3.5 -3.5}}",
                "-0003.50|-3.50   |   -3.50",
            ),
            (
                "{{printf \"%e %E %.0e %G %.3g %.10g %g %g\" 0.0 1e-7 5.5 1e-7 1.0 1.0 1e21 1e20}}",
                "0.000000e+00 1.000000E-07 6e+00 1E-07 1 1 1e+21 1e+20",
            ),
            (
                "{{printf \"%g %g %g %g %g\" 100000.0 1000000.0 1e-4 1e-5 0.0}}",
                "100000 1e+06 0.0001 1e-05 0",
            ),
            ("{{printf \"%.20f\" 0.1}}", "0.10000000000000000555"),
            (
                "{{printf \"%.1f %.1f %.1f %.1f\" 0.25 0.35 0.45 -0.25}}",
                "0.2 0.3 0.5 -0.2",
            ),
            (
                "{{printf \"%d|%5d|%-5d|%05d|%x|%#X|%o|%#o|%b\" -42 -42 -42 -42 -42 -42 -42 -42 -42}}",
                "-42|  -42|-42  |-0042|-2a|-0X2A|-52|-052|-101010",
            ),
            (
                "{{printf \"%q %q %q %+q %#q\" \"\\t\\x00\" \"日本\" \"\\u2028\" \"日本\" \"a`b\"}}",
                "\"\\t\\x00\" \"日本\" \"\\u2028\" \"\\u65e5\\u672c\" \"a`b\"",
            ),
            (
                "{{printf \"%U %#U %q %+q\" 0x1F600 65 0x1F600 0x1F600}}",
                "U+1F600 U+0041 'A' '😀' '\\U0001f600'",
            ),
            (
                "{{printf \"%x %X\" \"Hello\" \"Hello\"}}",
                "48656c6c6f 48656C6C6F",
            ),
            (
                "{{printf \"%.2s|%.5d|%.0f|%.f\" \"日本語\" 42 2.5 3.5}}",
                "日本|00042|2|4",
            ),
            ("{{printf \"%[2]s %[1]s %s\" \"a\" \"b\"}}", "b a b"),
            ("{{printf \"%[3]d\" 1}}", "%!d(BADINDEX)"),
            (
                "{{printf \"%-+5d|%+-5d|% 05d\" 3 3 3}}",
                "+3   |+3   | 0003",
            ),
            (
                "{{printf \"%e\" 1e100}} {{printf \"%e\" 1e-100}} {{printf \"%g\" 1e100}}",
                "1.000000e+100 1.000000e-100 1e+100",
            ),
            ("{{printf \"%5.1v|%.1v\" \"abc\" 3.14159}}", "    a|3"),
            ("{{printf \"%05s|%-05d\" \"ab\" 3}}", "000ab|3    "),
            ("{{.ab | printf \"%s-%s\" \"y\"}}", "y-hello"),
            (
                "{{printf \"%#g|%#.3g|%#.0e|%#.0f|%#v|%#x|%#X\" 1.0 2.0 5.0 3.0 1.5 100000.0 100000.0}}",
                "1.00000|2.00|5.e+00|3.|1.5|0x1.86a0p+16|0X1.86AP+16",
            ),
            (
                "{{printf \"%b|%b|%b\" 1.0 -0.5 0.1}}",
                "4503599627370496p-52|-4503599627370496p-53|7205759403792794p-56",
            ),
            (
                "{{printf \"%.3x|%.0x|%.1X|%x|%X\" 1e-7 0.1 1e21 0.0 -2.5}}",
                "0x1.ad8p-24|0x1p-03|0X1.BP+69|0x0p+00|-0X1.4P+01",
            ),
            (
                "{{printf \"%.10U|%08.6U|%#U\" 0x1F600 65 0x1F600}}",
                "U+000001F600|U+000041|U+1F600 '😀'",
            ),
            (
                "{{printf \"%05t|%-6v|%06q|%5c\" true nil \"a\" 66}}",
                "0true|<nil> |000\"a\"|    B",
            ),
            (
                "{{printf \"%+q|%#q|%q\" -42 65 0x10FFFF}}",
                "'\\ufffd'|'A'|'\\U0010ffff'",
            ),
            (
                "{{printf \"%v\" (list nil 1)}} {{printf \"%5v|%-5d|\" (list nil 1) (list nil 2)}}",
                "[<nil> 1] [<nil>     1]|[<nil> 2    ]|",
            ),
        ],
    );
}

#[test]
fn ekuiper_doc_examples_single() {
    check(
        ROWS,
        &[
            ("{{json .}}", "[{\"ab\":\"hello1\"},{\"ab\":\"hello2\"}]"),
            (
                "{\"content\":{{json .}}}",
                "{\"content\":[{\"ab\":\"hello1\"},{\"ab\":\"hello2\"}]}",
            ),
            (
                "{\"content\":{{json (index . 0)}}}",
                "{\"content\":{\"ab\":\"hello1\"}}",
            ),
            ("{\"content\":{{index . 0 \"ab\"}}}", "{\"content\":hello1}"),
            (
                "<div>results</div><ul>{{range .}}<li>{{.ab}}</li>{{end}}</ul>",
                "<div>results</div><ul><li>hello1</li><li>hello2</li></ul>",
            ),
        ],
    );
}

#[test]
fn ekuiper_doc_examples_rows() {
    check(
        DOC1,
        &[
            (
                "{\"content\":{{json .}}}",
                "{\"content\":{\"device_id\":1,\"t_av\":36.25,\"t_count\":4,\"t_max\":80,\"t_min\":10}}",
            ),
            (
                "{{toJson .}}",
                "{\"device_id\":1,\"t_av\":36.25,\"t_count\":4,\"t_max\":80,\"t_min\":10}",
            ),
            ("{\"content\":{{.device_id}}}", "{\"content\":1}"),
            ("{\"content\":\"{{.device_id}}\"}", "{\"content\":\"1\"}"),
            (
                "{{if lt .t_av 30.0}} {\"field1\": true} {{else}}  {\"field1\": false} {{end}}",
                "  {\"field1\": false} ",
            ),
            (
                "{\"device_id\": {{.device_id}}, \"description\": \"{{if lt .t_av 30.0}}Current temperature is {{.t_av}}, it's normal.\"{{else if ge .t_av 30.0}}Current temperature is {{.t_av}}, it's high.\"{{end}}}",
                "{\"device_id\": 1, \"description\": \"Current temperature is 36.25, it's high.\"}",
            ),
        ],
    );
}

#[test]
fn ekuiper_doc_examples_traversal() {
    check(
        DOC2,
        &[(
            "{{$len := len .values}} {{$loopsize := add $len -1}} {\"device_id\": \"{{.device_id}}\", \"description\": [{{range $index, $ele := .values}} {{if le .temperature 25.0}}\"fine\"{{else if gt .temperature 25.0}}\"high\"{{end}} {{if eq $loopsize $index}}]{{else}},{{end}}{{end}}}",
            "  {\"device_id\": \"1\", \"description\": [ \"fine\" , \"fine\" , \"high\" ]}",
        )],
    );
}

#[test]
fn ekuiper_functions() {
    check(
        ROW,
        &[
            (
                "{{json .ab}} {{json .missing}} {{json 1.5}} {{json .arr}}",
                "\"hello\" null 1.5 [1,\"x\",null,{\"q\":1.5}]",
            ),
            (
                "{{base64 \"hi\"}} {{base64 1.5}} {{base64 1e21}} {{base64 .i}} {{base64 true}} {{base64 .m}}",
                "aGk= MS41 MTAwMDAwMDAwMDAwMDAwMDAwMDAwMA== Nw== dHJ1ZQ== eyJhIjoxLCJiIjoyLCJjIjp7ImQiOiJkZWVwIn19",
            ),
        ],
    );
}

#[test]
fn sprig_strings() {
    check(
        ROW,
        &[
            (
                "{{upper \"abc\"}} {{lower \"ABC\"}} {{title \"hello wORLD foo_bar x-y\"}} {{untitle \"Hello World\"}} {{title \"ǆemal élan\"}}",
                "ABC abc Hello WORLD Foo_bar X-Y hello world ǅemal Élan",
            ),
            (
                "{{trim \"  x  \"}} {{trimAll \"$\" \"$$x$\"}} {{trimall \"$\" \"$x$\"}} {{trimPrefix \"a\" \"aab\"}} {{trimSuffix \"b\" \"abb\"}} {{nospace \" a b\\tc \"}}",
                "x x x ab ab abc",
            ),
            (
                "{{substr 1 3 \"hello\"}} {{substr -1 3 \"hello\"}} {{substr 2 -1 \"hello\"}} {{substr 2 99 \"hello\"}}",
                "el hel llo llo",
            ),
            (
                "{{trunc 3 \"hello\"}} {{trunc -2 \"hello\"}} {{trunc 10 \"hi\"}} {{trunc -10 \"hi\"}}",
                "hel lo hi hi",
            ),
            (
                "{{replace \"a\" \"b\" \"banana\"}} {{replace \"\" \"-\" \"abc\"}} {{contains \"an\" \"banana\"}} {{hasPrefix \"ba\" \"banana\"}} {{hasSuffix \"na\" \"banana\"}} {{repeat 3 \"ab\"}}",
                "bbnbnb -a-b-c- true true true ababab",
            ),
            (
                "{{quote \"a\\\"b\" 1 .n .t nil 2.5}} {{squote \"a\" 1 .n}} {{cat \"a\" 1 nil \"b\"}}",
                "\"a\\\"b\" \"1\" \"true\" \"2.5\" 'a' '1' a 1 b",
            ),
            (
                "{{indent 2 \"a\\nb\"}}|{{nindent 2 \"a\"}}",
                "  a\n  b|\n  a",
            ),
            (
                "{{abbrev 5 \"hello world\"}} {{abbrev 3 \"hello\"}} {{abbrev 20 \"hi\"}}",
                "he... hello hi",
            ),
            (
                "{{plural \"one\" \"many\" 2}} {{plural \"one\" \"many\" 1}} {{initials \"hello big world\"}} {{hello}}",
                "many one hbw Hello!",
            ),
            (
                "{{toString .m}} {{toString .n}} {{toString 1.5}} {{toString .ab}}",
                "map[a:1 b:2 c:map[d:deep]] <nil> 1.5 hello",
            ),
            (
                "{{join \",\" .arr}} {{join \"-\" \"abc\"}} {{join \",\" .n}} {{join \",\" .strs}}",
                "1,x,map[q:1.5] abc  b,a,c",
            ),
            (
                "{{split \",\" \"a,b,c\"}} {{(split \",\" \"a,b\")._1}} {{splitList \",\" \"a,b\"}} {{splitn \",\" 2 \"a,b,c\"}} {{splitList \"\" \"abc\"}}",
                "map[_0:a _1:b _2:c] b [a b] map[_0:a _1:b,c] [a b c]",
            ),
            (
                "{{sortAlpha (list \"b\" \"a\" 1)}} {{toStrings (list 1 \"a\" nil)}}",
                "[1 a b] [1 a]",
            ),
            (
                "{{\"abc\" | upper | repeat 2}} {{repeat 2.0 \"ab\"}}",
                "ABCABC abab",
            ),
        ],
    );
}

#[test]
fn sprig_numbers() {
    check(
        ROW,
        &[
            (
                "{{int64 1e21}} {{int -1e30}} {{mul 3 1e21}}",
                "-9223372036854775808 -9223372036854775808 -9223372036854775808",
            ),
            (
                "{{int \"12\"}} {{int \"0x1f\"}} {{int \"017\"}} {{int \"1.0\"}} {{int \"1.5\"}} {{int 2.7}} {{int -2.7}} {{int true}} {{int .n}} {{int64 \"5\"}}",
                "12 31 15 1 0 2 -2 1 0 5",
            ),
            (
                "{{float64 \"1.5\"}} {{float64 \"x\"}} {{float64 3}} {{float64 \"1e3\"}} {{atoi \"12\"}} {{atoi \"x\"}} {{atoi \"-3\"}} {{toDecimal \"777\"}}",
                "1.5 0 3 1000 12 0 -3 511",
            ),
            (
                "{{add 1 2.7 \"3\"}} {{sub 5 2}} {{mul 2 3 4}} {{div 7 2}} {{mod 7 3}} {{add1 1.9}} {{max 1 5 3}} {{min 4 2 8}} {{biggest 1 9}} {{div -7 2}} {{mod -7 3}}",
                "6 3 24 3 1 2 5 2 9 -3 -1",
            ),
            (
                "{{addf 0.1 0.2}} {{subf 1 0.9}} {{mulf 1.1 3}} {{divf 1 3}} {{divf 10 4}} {{divf 2 3}} {{divf -2 3}} {{mulf 0.1 0.1 0.1}} {{add1f 0.1}} {{addf}}",
                "0.3 0.1 3.3 0.3333333333333333 2.5 0.6666666666666667 -0.6666666666666667 0.001 1.1 0",
            ),
            (
                "{{maxf 1 2.5}} {{minf 1 2.5}} {{round 3.14159 2}} {{round 2.5 0}} {{round -2.5 0}} {{round 1.2345 3 0.4}} {{floor 2.7}} {{ceil 2.1}}",
                "2.5 1 3.14 3 -3 1.235 2 3",
            ),
            (
                "{{until 3}} {{until -2}} {{untilStep 0 10 3}} {{untilStep 10 0 -4}}",
                "[0 1 2] [0 -1] [0 3 6 9] [10 6 2]",
            ),
            (
                "{{seq 3}}|{{seq 2 5}}|{{seq 5 2}}|{{seq 0 2 6}}|{{seq 0}}|{{seq 6 -2 0}}|{{seq 6 2 0}}|{{seq 1 2 3 4}}",
                "1 2 3|2 3 4 5|5 4 3 2|0 2 4 6|1 0|6 4 2 0||",
            ),
        ],
    );
}

#[test]
fn sprig_lists() {
    check(
        ROW,
        &[
            (
                "{{list 1 \"a\" nil}} {{first (list 1 2)}} {{last (list 1 2)}} {{rest (list 1 2 3)}} {{initial (list 1 2 3)}} {{first list}} {{rest list}} {{last list}}",
                "[1 a <nil>] 1 2 [2 3] [1 2] <no value> [] <no value>",
            ),
            (
                "{{slice (list 1 2 3) 1}} {{slice (list 1 2 3) 1 2}} {{slice list 0}}",
                "[2 3] [2] <no value>",
            ),
            (
                "{{has 2 (list 1 2)}} {{has \"2\" (list 1 2)}} {{has 1 .n}}",
                "true false false",
            ),
            (
                "{{uniq (list 1 1 2)}} {{without (list 1 2 3) 2}} {{compact (list 0 1 \"\" \"a\" nil)}} {{reverse (list 1 2 3)}}",
                "[1 2] [1 3] [1 a] [3 2 1]",
            ),
            (
                "{{append (list 1) 2}} {{push (list 1) 2}} {{prepend (list 1) 0}} {{concat (list 1) (list 2 3)}} {{chunk 2 (list 1 2 3)}} {{tuple 1 2}}",
                "[1 2] [1 2] [0 1] [1 2 3] [[1 2] [3]] [1 2]",
            ),
            (
                "{{(list 1 2) | len}} {{list | len}} {{first .nums}} {{last .strs}}",
                "2 0 3 c",
            ),
        ],
    );
}

#[test]
fn sprig_dicts() {
    check(
        ROW,
        &[
            (
                "{{dict \"a\" 1 \"b\" \"x\" \"c\"}} {{get (dict \"a\" 1) \"a\"}} {{get (dict \"a\" 1) \"z\"}}|{{keys (dict \"b\" 1 \"a\" 2) | sortAlpha}}",
                "map[a:1 b:x c:] 1 |[a b]",
            ),
            (
                "{{hasKey (dict \"a\" 1) \"a\"}} {{hasKey .missing \"a\"}} {{pluck \"a\" (dict \"a\" 1) (dict \"b\" 2) (dict \"a\" 3)}} {{pick (dict \"a\" 1 \"b\" 2) \"a\"}} {{omit (dict \"a\" 1 \"b\" 2) \"a\"}} {{values (dict \"a\" 1)}}",
                "true false [1 3] map[a:1] map[b:2] [1]",
            ),
            (
                "{{dig \"a\" \"b\" \"def\" (dict \"a\" (dict \"b\" 5))}} {{dig \"a\" \"x\" \"def\" (dict \"a\" (dict \"b\" 5))}}",
                "5 def",
            ),
            (
                "{{$d := dict \"a\" 1}}{{$_ := set $d \"b\" 2}}{{$d}} {{unset $d \"a\"}} {{$d}}",
                "map[a:1 b:2] map[b:2] map[b:2]",
            ),
            (
                "{{get .m \"a\"}} {{get .m \"zz\"}}|{{hasKey .m \"c\"}}",
                "1 |true",
            ),
        ],
    );
}

#[test]
fn sprig_defaults_and_types() {
    check(
        ROW,
        &[
            (
                "{{default \"d\" .missing}} {{default \"d\" \"\"}} {{default \"d\" 0}} {{default \"d\" .ab}} {{.missing | default \"x\"}} {{default \"d\"}}",
                "d d d hello x d",
            ),
            (
                "{{empty .n}} {{empty 0}} {{empty .m}} {{empty list}}",
                "true true false true",
            ),
            (
                "{{coalesce .n 0 \"\" \"x\" 1}} {{coalesce}}",
                "x <no value>",
            ),
            (
                "{{all 1 \"a\"}} {{all 1 \"\"}} {{any 0 \"\"}} {{any 0 \"x\"}}",
                "true false false true",
            ),
            (
                "{{ternary \"y\" \"n\" true}} {{ternary \"y\" \"n\" false}} {{true | ternary \"y\" \"n\"}}",
                "y n y",
            ),
            (
                "{{deepEqual (list 1) (list 1)}} {{deepCopy .m}}",
                "true map[a:1 b:2 c:map[d:deep]]",
            ),
            (
                "{{kindOf .m}} {{kindOf .arr}} {{kindOf .i}} {{kindOf .f}} {{kindOf \"s\"}} {{kindOf .n}} {{kindIs \"map\" .m}}",
                "map slice int64 float64 string invalid true",
            ),
            (
                "{{typeOf .m}} {{typeOf .arr}} {{typeOf .i}} {{typeOf .n}} {{typeIs \"string\" .ab}} {{typeIsLike \"string\" .ab}}",
                "map[string]interface {} []interface {} int64 <nil> true true",
            ),
        ],
    );
}

#[test]
fn sprig_json_and_encodings() {
    check(
        ROW,
        &[
            (
                "{{toJson .m}} {{toJson .n}} {{.arr | toJson}} {{mustToJson 1}} {{toRawJson .e}}",
                "{\"a\":1,\"b\":2,\"c\":{\"d\":\"deep\"}} null [1,\"x\",null,{\"q\":1.5}] 1 \"\"",
            ),
            (
                "{{toPrettyJson .m}}",
                "{\n  \"a\": 1,\n  \"b\": 2,\n  \"c\": {\n    \"d\": \"deep\"\n  }\n}",
            ),
            (
                "{{toPrettyJson .arr}}",
                "[\n  1,\n  \"x\",\n  null,\n  {\n    \"q\": 1.5\n  }\n]",
            ),
            (
                "{{toPrettyJson list}} {{toPrettyJson dict}} {{toPrettyJson 1}}",
                "[] {} 1",
            ),
            (
                "{{(fromJson \"{\\\"a\\\":1000000,\\\"b\\\":[1,2]}\").a}} {{fromJson \"bad\"}} {{toJson (fromJson \"{\\\"a\\\":1}\")}} {{mustFromJson \"[1]\"}}",
                "1e+06 <no value> {\"a\":1} [1]",
            ),
            (
                "{{b64enc \"hello\"}} {{b64dec \"aGVsbG8=\"}} {{b64dec \"aGVsbG8\"}} {{b64dec \"a!\"}} {{b64dec \"abc\"}} {{b64dec \"ab==\"}} {{b64dec \"aGVs\\nbG8=\"}}",
                "aGVsbG8= hello illegal base64 data at input byte 4 illegal base64 data at input byte 1 illegal base64 data at input byte 0 i hello",
            ),
            (
                "{{b32enc \"hi\"}} {{b32dec \"NBUQ====\"}} {{b32enc \"hello world\"}}",
                "NBUQ==== hi NBSWY3DPEB3W64TMMQ======",
            ),
        ],
    );
}

#[test]
fn parse_errors() {
    check_err(
        ROW,
        &[
            ("{{.a}", "1:3: bad character U+007D '}'"),
            ("{{ .a }", "1:7: unexpected \"}\" in operand"),
            ("{{", "1:3: unclosed action"),
            ("{{.a", "1:5: unclosed action"),
            ("x {{foo}}", "1:5: function \"foo\" not defined"),
            ("{{end}}", "1:6: unexpected {{end}}"),
            ("{{else}}", "1:7: unexpected {{else}}"),
            ("{{if}}{{end}}", "1:5: missing value for if"),
            ("{{if .a}}", "1:10: unexpected EOF"),
            (
                "{{if .a}}{{else}}{{else}}{{end}}",
                "1:24: expected end; found {{else}}",
            ),
            ("{{\"abc}}", "1:3: unterminated quoted string"),
            ("{{\"a\\q\"}}", "1:3: invalid syntax"),
            ("{{'ab'}}", "1:3: malformed character constant: 'ab'"),
            ("{{''}}", "1:3: invalid syntax"),
            ("{{`abc}}", "1:3: unterminated raw quoted string"),
            ("{{/* x }}", "1:3: unclosed comment"),
            (
                "{{/* x */ .a}}",
                "1:3: comment ends before closing delimiter",
            ),
            ("{{ /* x */ }}", "1:4: unexpected \"/\" in command"),
            (
                "{{.a | 1}}",
                "1:8: non executable command in pipeline stage 2",
            ),
            ("{{(1}}", "1:5: unclosed left paren"),
            ("{{1)}}", "1:4: unexpected \")\" in command"),
            ("{{.a.}}", "1:5: unexpected <.> in operand"),
            ("{{\"a\".b}}", "1:3: unexpected . after term \"\\\"a\\\"\""),
            ("{{1.x}}", "1:3: bad number syntax: \"1.x\""),
            ("{{08}}", "1:3: integer overflow: \"08\""),
            ("{{0x}}", "1:3: illegal number syntax: \"0x\""),
            ("{{1e}}", "1:3: illegal number syntax: \"1e\""),
            ("{{-}}", "1:3: illegal number syntax: \"-\""),
            ("{{3k}}", "1:3: bad number syntax: \"3k\""),
            ("{{1+2}}", "1:3: bad number syntax: \"1+2\""),
            ("{{$x.}}", "1:3: undefined variable \"$x\""),
            ("{{.a:}}", "1:5: expected :="),
            ("{{:=}}", "1:3: unexpected \":=\" in command"),
            ("{{.a = 1}}", "1:6: unexpected \"=\" in operand"),
            ("{{$x := }}", "1:9: missing value for command"),
            ("{{}}", "1:3: missing value for command"),
            ("{{|}}", "1:3: unexpected \"|\" in command"),
            ("{{#}}", "1:3: unexpected \"#\" in command"),
            ("{{é}}", "1:3: function \"é\" not defined"),
            (
                "{{template .a}}",
                "1:12: unexpected \".a\" in template clause",
            ),
            ("{{template}}", "1:11: unexpected \"}}\" in template clause"),
            (
                "{{define \"a\"}}{{define \"b\"}}{{end}}{{end}}",
                "1:17: unexpected <define> in command",
            ),
            ("{{break 1}}", "1:9: unexpected \"1\" in {{break}}"),
            ("{{break}}", "1:3: {{break}} outside {{range}}"),
            (
                "{{if .}}{{continue}}{{end}}",
                "1:11: {{continue}} outside {{range}}",
            ),
            ("{{nil.a}}", "1:3: unexpected . after term \"nil\""),
            ("{{..a}}", "1:3: unexpected . after term \".\""),
            ("{{with}}{{end}}", "1:7: missing value for with"),
            ("{{range}}{{end}}", "1:8: missing value for range"),
            (
                "{{range $i, $e, $f := .}}{{end}}",
                "1:13: too many declarations in range",
            ),
            (
                "{{with $x, $y := .}}{{end}}",
                "1:8: too many declarations in with",
            ),
            (
                "{{range $i, 1 := .}}{{end}}",
                "1:13: range can only initialize variables",
            ),
            (
                "{{$x := 1}}{{define \"t\"}}{{$x}}{{end}}",
                "1:28: undefined variable \"$x\"",
            ),
            ("{{$undefined}}", "1:3: undefined variable \"$undefined\""),
            (
                "{{range .}}{{else if .}}{{end}}",
                "1:19: unexpected <if> in input",
            ),
            (
                "{{define \"x\"}}a{{else}}b{{end}}",
                "1:1: unexpected {{else}} in define clause",
            ),
            (
                "{{define x}}{{end}}",
                "1:10: unexpected \"x\" in define clause",
            ),
            (
                "{{block \"b\"}}{{end}}",
                "1:12: missing value for block clause",
            ),
            (
                "{{print \"a\"\"b\"}}",
                "1:12: unexpected \"\\\"b\\\"\" in operand",
            ),
            ("a\nb\n{{.x}\n", "3:3: bad character U+007D '}'"),
            ("{{with .}}{{end}} {{end}}", "1:24: unexpected {{end}}"),
            (
                "{{define \"a\"}}1{{end}}{{define \"a\"}}2{{end}}",
                "1:23: multiple definition of template \"a\"",
            ),
            ("{{1__0}}", "1:3: illegal number syntax: \"1__0\""),
        ],
    );
}

#[test]
fn exec_errors() {
    check_err(
        ROW,
        &[
            (
                "{{.n.x}}",
                "1:3: executing at <.n.x>: nil pointer evaluating interface {}.x",
            ),
            (
                "{{.ab.x}}",
                "1:3: executing at <.ab.x>: can't evaluate field x in type string",
            ),
            (
                "{{.arr.x}}",
                "1:3: executing at <.arr.x>: can't evaluate field x in type []interface {}",
            ),
            (
                "{{.ab 1}}",
                "1:3: executing at <.ab>: ab is not a method but has arguments",
            ),
            (
                "{{1 | .ab}}",
                "1:7: executing at <.ab>: ab is not a method but has arguments",
            ),
            (
                "{{18446744073709551615}}",
                "1:3: executing at <18446744073709551615>: 18446744073709551615 overflows int",
            ),
            (
                "{{$x := $x}}",
                "1:9: executing at <$x>: undefined variable: $x",
            ),
            (
                "{{if .fl}}{{$x := 1}}{{else}}{{$x}}{{end}}",
                "1:32: executing at <$x>: undefined variable: $x",
            ),
            (
                "{{$x = 1}}",
                "1:3: executing at <$x = 1>: undefined variable: $x",
            ),
            (
                "{{range .arr}}{{.q}}{{end}}",
                "1:17: executing at <.q>: can't evaluate field q in type int64",
            ),
            (
                "{{range .f}}x{{end}}",
                "1:9: executing at <.f>: range can't iterate over 2.5",
            ),
            (
                "{{template \"nope\"}}",
                "1:1: executing at <{{template \"nope\"}}>: template \"nope\" not defined",
            ),
            (
                "{{and}}",
                "1:3: executing at <and>: wrong number of args for and: want at least 1 got 0",
            ),
            (
                "{{len .missing}}",
                "1:3: executing at <len .missing>: error calling len: len of untyped nil",
            ),
            (
                "{{len .n}}",
                "1:3: executing at <len .n>: error calling len: len of nil pointer",
            ),
            (
                "{{len 3}}",
                "1:3: executing at <len 3>: error calling len: len of type int64",
            ),
            (
                "{{index .arr 4}}",
                "1:3: executing at <index .arr 4>: error calling index: index out of range: 4",
            ),
            (
                "{{index .missing 1}}",
                "1:3: executing at <index .missing 1>: error calling index: index of untyped nil",
            ),
            (
                "{{index .n 1}}",
                "1:3: executing at <index .n 1>: error calling index: index of untyped nil",
            ),
            (
                "{{index .m 1}}",
                "1:3: executing at <index .m 1>: error calling index: value has type int64; should be string",
            ),
            (
                "{{index .m \"zz\" \"y\"}}",
                "1:3: executing at <index .m \"zz\" \"y\">: error calling index: index of nil pointer",
            ),
            (
                "{{index .arr \"x\"}}",
                "1:3: executing at <index .arr \"x\">: error calling index: cannot index slice/array with type string",
            ),
            (
                "{{index .arr nil}}",
                "1:3: executing at <index .arr nil>: error calling index: cannot index slice/array with nil",
            ),
            (
                "{{index .i 0}}",
                "1:3: executing at <index .i 0>: error calling index: can't index item of type int64",
            ),
            (
                "{{eq \"a\" 1}}",
                "1:3: executing at <eq \"a\" 1>: error calling eq: incompatible types for comparison",
            ),
            (
                "{{lt .n 1}}",
                "1:3: executing at <lt .n 1>: error calling lt: invalid type for comparison",
            ),
            (
                "{{lt true false}}",
                "1:3: executing at <lt true false>: error calling lt: invalid type for comparison",
            ),
            (
                "{{eq 1}}",
                "1:3: executing at <eq 1>: error calling eq: missing argument for comparison",
            ),
            (
                "{{ne 1}}",
                "1:3: executing at <ne>: wrong number of args for ne: want 2 got 1",
            ),
            ("{{nil}}", "1:3: executing at <nil>: nil is not a command"),
            (
                "{{1 2}}",
                "1:3: executing at <1>: can't give argument to non-function 1",
            ),
            (
                "{{.ab | .ab}}",
                "1:9: executing at <.ab>: ab is not a method but has arguments",
            ),
            (
                "{{(list 1 2).x}}",
                "1:3: executing at <(list 1 2).x>: can't evaluate field x in type []interface {}",
            ),
            (
                "{{upper .missing}}",
                "1:9: executing at <.missing>: invalid value; expected string",
            ),
            (
                "{{upper .n}}",
                "1:9: executing at <.n>: wrong type for value; expected string; got interface {}",
            ),
            (
                "{{upper .i}}",
                "1:9: executing at <.i>: wrong type for value; expected string; got int64",
            ),
            (
                "{{upper 1}}",
                "1:9: executing at <1>: expected string; found 1",
            ),
            (
                "{{upper nil}}",
                "1:9: executing at <nil>: cannot assign nil to string",
            ),
            (
                "{{.missing | upper}}",
                "1:14: executing at <upper>: invalid value; expected string",
            ),
            (
                "{{hasKey .n \"a\"}}",
                "1:10: executing at <.n>: wrong type for value; expected map[string]interface {}; got interface {}",
            ),
            (
                "{{repeat 2.5 \"ab\"}}",
                "1:10: executing at <2.5>: expected integer; found 2.5",
            ),
            (
                "{{ternary 1 2 .i}}",
                "1:15: executing at <.i>: wrong type for value; expected bool; got int64",
            ),
            (
                "{{get 1 \"a\"}}",
                "1:7: executing at <1>: can't handle 1 for arg of type map[string]interface {}",
            ),
            (
                "{{div 1 0}}",
                "1:3: executing at <div 1 0>: error calling div: runtime error: integer divide by zero",
            ),
            (
                "{{mod 1 0}}",
                "1:3: executing at <mod 1 0>: error calling mod: runtime error: integer divide by zero",
            ),
            (
                "{{divf 1 0}}",
                "1:3: executing at <divf 1 0>: error calling divf: decimal division by 0",
            ),
            (
                "{{substr 4 2 \"hello\"}}",
                "1:3: executing at <substr 4 2 \"hello\">: error calling substr: runtime error: slice bounds out of range [4:2]",
            ),
            (
                "{{substr -1 9 \"hello\"}}",
                "1:3: executing at <substr -1 9 \"hello\">: error calling substr: runtime error: slice bounds out of range [:9] with length 5",
            ),
            (
                "{{repeat -1 \"a\"}}",
                "1:3: executing at <repeat -1 \"a\">: error calling repeat: strings: negative Repeat count",
            ),
            (
                "{{first \"abc\"}}",
                "1:3: executing at <first \"abc\">: error calling first: Cannot find first on type string",
            ),
            (
                "{{base64 .n}}",
                "1:3: executing at <base64 .n>: error calling base64: based64 error for nil",
            ),
            (
                "{{base64 .arr}}",
                "1:3: executing at <base64 .arr>: error calling base64: Unsupported data type slice for base64 function.",
            ),
            (
                "{{fail \"boom\"}}",
                "1:3: executing at <fail \"boom\">: error calling fail: boom",
            ),
            (
                "{{range .ab}}x{{end}}",
                "1:9: executing at <.ab>: range can't iterate over hello",
            ),
            (
                "{{$x := .n}}{{$x.zz}}{{.n.zz}}",
                "1:24: executing at <.n.zz>: nil pointer evaluating interface {}.zz",
            ),
            (
                "line1\n  {{.m.c.d.e}}",
                "2:5: executing at <.m.c.d.e>: can't evaluate field e in type string",
            ),
            (
                "{{printf}}",
                "1:3: executing at <printf>: wrong number of args for printf: want at least 1 got 0",
            ),
            (
                "{{ .a .b }}",
                "1:4: executing at <.a>: a is not a method but has arguments",
            ),
        ],
    );
}
