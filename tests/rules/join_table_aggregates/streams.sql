CREATE STREAM demo ( color STRING, size BIGINT, ts BIGINT ) WITH (DATASOURCE="demo.jsonl", TYPE="file", FORMAT="json");
CREATE TABLE table1 ( name STRING, size BIGINT, id BIGINT ) WITH (DATASOURCE="lookup.json", TYPE="file", FORMAT="json", STRICT_VALIDATION="true");
