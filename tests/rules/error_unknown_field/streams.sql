CREATE STREAM demo (id BIGINT) WITH (TYPE="file", DATASOURCE="input.jsonl");
