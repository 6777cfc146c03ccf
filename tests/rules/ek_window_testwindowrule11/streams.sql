-- From eKuiper internal/topo/topotest/window_rule_test.go, TestWindow / TestWindowRule11: the mock streams of
-- mocknode/mock_data.go as files, in the order eKuiper sends them; `table1` is eKuiper's file table
-- over its test/lookup.json.
-- eKuiper runs this rule on its mock processing clock, moved to each row's mock time before the row is
-- sent (the rule stops at the end of the mock data): it runs here on the replay clock (args.txt) on `ts`,
-- each row's mock time.
CREATE STREAM demo ( color STRING, size BIGINT, ts BIGINT ) WITH (DATASOURCE="demo.jsonl", TYPE="file", FORMAT="json");
CREATE TABLE table1 ( name STRING, size BIGINT, id BIGINT ) WITH (DATASOURCE="lookup.json", TYPE="file", FORMAT="json", STRICT_VALIDATION="true");
