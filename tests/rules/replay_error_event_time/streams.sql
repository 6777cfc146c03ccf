CREATE STREAM demo (size BIGINT, ts BIGINT) WITH (TYPE="file", DATASOURCE="events.jsonl", FORMAT="json", TIMESTAMP="ts");
