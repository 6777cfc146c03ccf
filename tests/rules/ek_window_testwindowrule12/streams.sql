-- From eKuiper internal/topo/topotest/window_rule_test.go, TestWindow / TestWindowRule12: the mock streams of
-- mocknode/mock_data.go as files, in the order eKuiper sends them.
-- eKuiper runs this rule on its mock processing clock set to each row's time, which is
-- its `ts` here: it runs on event time on `ts`.
CREATE STREAM demo ( color STRING, size BIGINT, ts BIGINT ) WITH (TIMESTAMP="ts", DATASOURCE="demo.jsonl", TYPE="file", FORMAT="json");
