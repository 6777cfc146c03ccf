CREATE STREAM demo () WITH (TYPE="file", DATASOURCE="input.jsonl", FORMAT="json");
