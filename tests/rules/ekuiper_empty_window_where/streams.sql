-- eKuiper's filter operator passes nothing on when a window has no row left (internal/topo/operator/filter_operator.go;
-- internal/topo/topotest/window_rule_test.go, TestWindowRule3's filtered windows): windows [0,10s) and [20s,30s)
-- have rows but none pass WHERE, so they send nothing; [10s,20s) has count 1.
CREATE STREAM demo (color STRING, size BIGINT, ts BIGINT) WITH (TYPE="file", DATASOURCE="events.jsonl", TIMESTAMP="ts");
