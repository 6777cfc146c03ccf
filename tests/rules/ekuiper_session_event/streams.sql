-- From eKuiper internal/topo/topotest/window_rule_test.go, TestEventWindowRule8 (stream sessionDemoE of mock_data.go,
-- in its timestamps' order; eKuiper drops the late row 1541152486823, so it is left out here).
CREATE STREAM sessionDemoE (temp FLOAT, hum BIGINT, ts BIGINT) WITH (TYPE="file", DATASOURCE="events.jsonl", TIMESTAMP="ts");
