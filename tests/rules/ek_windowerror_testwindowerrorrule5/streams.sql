-- From eKuiper internal/topo/topotest/window_rule_test.go, TestWindowError / TestWindowErrorRule5: the mock streams of
-- mocknode/mock_data.go as files, in the order eKuiper sends them.
-- eKuiper runs this rule on its mock processing clock, moved to each row's mock time before the row is
-- sent (the rule stops at the end of the mock data): it runs here on the replay clock (args.txt) on `ts`,
-- each row's mock time.
CREATE STREAM ldemo ( ) WITH (DATASOURCE="ldemo.jsonl", TYPE="file", FORMAT="json");
