-- A JSONPath given as a constant is checked when the rule is compiled.
CREATE STREAM demo () WITH (TYPE="file", DATASOURCE="input.jsonl");
