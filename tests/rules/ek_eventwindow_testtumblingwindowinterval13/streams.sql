-- From eKuiper internal/topo/topotest/window_rule_test.go, TestEventWindow / TestTUMBLINGWindowInterval13: the mock streams of
-- mocknode/mock_data.go as files, in the order eKuiper sends them.
CREATE STREAM demoE2 () WITH (DATASOURCE="demoE2.jsonl", TYPE="file", FORMAT="json", TIMESTAMP="ts");
