-- eKuiper's watermark operator (internal/topo/node/watermark_op.go; docs: rules/event_time "lateTolerance"):
-- without a window, rows go on in time order once the watermark passes them; late rows are dropped.
CREATE STREAM demo (color STRING, ts BIGINT) WITH (TYPE="file", DATASOURCE="events.jsonl", TIMESTAMP="ts");
