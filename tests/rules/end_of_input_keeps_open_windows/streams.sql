CREATE STREAM demo (color STRING, size BIGINT, ts BIGINT) WITH (DATASOURCE="demo.jsonl", TYPE="file", FORMAT="json", TIMESTAMP="ts");
