-- Without a window, ORDER BY and LIMIT apply to the joined rows of each row of demo, as to a
-- window's rows.
CREATE STREAM demo ( color STRING, size BIGINT, ts BIGINT ) WITH (DATASOURCE="demo.jsonl", TYPE="file", FORMAT="json");
CREATE TABLE table1 ( name STRING, size BIGINT, id BIGINT ) WITH (DATASOURCE="lookup.json", TYPE="file", FORMAT="json", STRICT_VALIDATION="true");
