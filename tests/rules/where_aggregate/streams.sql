CREATE STREAM sim5 () WITH (TYPE="file", DATASOURCE="events.jsonl");
