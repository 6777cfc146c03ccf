-- From eKuiper internal/topo/topotest/window_rule_test.go, TestEventWindow / TestEventWindowRule5: the mock streams of
-- mocknode/mock_data.go as files, in the order eKuiper sends them.
CREATE STREAM sessionDemoE ( temp FLOAT, hum BIGINT, ts BIGINT ) WITH (DATASOURCE="sessionDemoE.jsonl", TYPE="file", FORMAT="json", TIMESTAMP="ts");
