-- eKuiper's state window example (docs, sqls/windows.md): a window begins at a = 1 and ends with
-- a = 5, one per value of b; b = 2's window never ends, so it is not sent.
CREATE STREAM demo () WITH (TYPE="file", DATASOURCE="input.jsonl");
