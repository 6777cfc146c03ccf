-- From eKuiper internal/topo/topotest/window_rule_test.go, TestEventWindow / TestEventWindowRule3: the mock streams of
-- mocknode/mock_data.go as files, in the order eKuiper sends them.
CREATE STREAM demoE ( color STRING, size BIGINT, ts BIGINT ) WITH (DATASOURCE="demoE.jsonl", TYPE="file", FORMAT="json", TIMESTAMP="ts");
CREATE STREAM demo1E ( temp FLOAT, hum BIGINT, ts BIGINT ) WITH (DATASOURCE="demo1E.jsonl", TYPE="file", FORMAT="json", TIMESTAMP="ts");
