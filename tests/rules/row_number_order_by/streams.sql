CREATE STREAM demo () WITH (TYPE="file", DATASOURCE="events.jsonl");
