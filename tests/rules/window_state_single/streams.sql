-- eKuiper's single-condition state window example (docs, sqls/windows.md): a row where a changed
-- ends the open window (without itself) and begins the next; the last one is still open at the end.
CREATE STREAM demo () WITH (TYPE="file", DATASOURCE="input.jsonl");
