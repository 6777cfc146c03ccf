-- eKuiper internal/topo/topotest/window_rule_test.go TestWindowRule5/TestEventWindowRule*: event_time() in a
-- windowed query is the window's end.
CREATE STREAM demo (color STRING, ts BIGINT) WITH (TYPE="file", DATASOURCE="events.jsonl", TIMESTAMP="ts");
