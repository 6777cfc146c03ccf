-- eKuiper's file source gives each row the metadata {"file": <the file>}; `sendMetaToSink`
-- sends it with the row's result as the field `__meta`.
CREATE STREAM demo ( color STRING, size BIGINT, ts BIGINT ) WITH (DATASOURCE="demo.jsonl", TYPE="file", FORMAT="json");
