CREATE STREAM demo (color STRING, size BIGINT, ts BIGINT) WITH (TYPE="file", DATASOURCE="events.jsonl", TIMESTAMP="ts");
