CREATE STREAM demo (id BIGINT, temp FLOAT, ok BOOLEAN, name STRING) WITH (TYPE="file", DATASOURCE="input.jsonl");
