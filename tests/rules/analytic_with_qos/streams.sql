CREATE STREAM demo (color STRING, size BIGINT, ts BIGINT) WITH (TYPE="file", DATASOURCE="demo.jsonl");
