CREATE STREAM demo (temperature FLOAT, timestamp BIGINT) WITH (TYPE="file", DATASOURCE="demo.jsonl", TIMESTAMP="timestamp");
CREATE STREAM demo1 (temperature FLOAT, timestamp BIGINT) WITH (TYPE="file", DATASOURCE="demo1.jsonl", TIMESTAMP="timestamp");
