-- From eKuiper internal/topo/topotest/window_rule_test.go, TestEventWindow / TestEventWindowRule7: the mock streams of
-- mocknode/mock_data.go as files, in the order eKuiper sends them.
CREATE STREAM demoErr ( color STRING, size BIGINT, ts BIGINT ) WITH (DATASOURCE="demoErr.jsonl", TYPE="file", FORMAT="json", TIMESTAMP="ts",STRICT_VALIDATION="true");
