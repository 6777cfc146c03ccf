-- From eKuiper internal/topo/topotest/window_rule_test.go, TestEventWindow / TestTUMBLINGWindowInterval14: the mock streams of
-- mocknode/mock_data.go as files, in the order eKuiper sends them.
CREATE STREAM demoE3 () WITH (DATASOURCE="demoE3.jsonl", TYPE="file", FORMAT="json", TIMESTAMP="ts");
