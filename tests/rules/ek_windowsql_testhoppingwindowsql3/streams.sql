-- From eKuiper internal/topo/topotest/rule_test.go, TestWindowSQL / TestHoppingWindowSQL3: the mock streams of
-- mocknode/mock_data.go as files, in the order eKuiper sends them.
CREATE STREAM demoE ( color STRING, size BIGINT, ts BIGINT ) WITH (DATASOURCE="demoE.jsonl", TYPE="file", FORMAT="json", TIMESTAMP="ts");
