CREATE STREAM demo (size BIGINT) WITH (TYPE="file", DATASOURCE="events.jsonl", FORMAT="json");
