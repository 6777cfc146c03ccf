-- eKuiper docs sqls/json_expr.md: `a->b[0]`, `a->b[1:3]`, dot access `name.first`, `s.name.first`; `->` on a non-object is null (the row is kept).
CREATE STREAM demo () WITH (TYPE="file", DATASOURCE="events.jsonl");
