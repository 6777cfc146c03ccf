CREATE STREAM demo () WITH (TYPE="file", DATASOURCE="readings.jsonl");
CREATE TABLE devices () WITH (TYPE="file", DATASOURCE="devices.json");
