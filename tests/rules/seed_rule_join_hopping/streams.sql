CREATE STREAM demo (temperature FLOAT, timestamp BIGINT) WITH (TYPE="file", DATASOURCE="demo.jsonl", FORMAT="json", TIMESTAMP="timestamp");
CREATE STREAM demo1 (temp FLOAT, timestamp BIGINT) WITH (TYPE="file", DATASOURCE="demo1.jsonl", FORMAT="json", TIMESTAMP="timestamp");
