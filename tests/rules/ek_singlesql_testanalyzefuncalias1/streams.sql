-- From eKuiper internal/topo/topotest/rule_test.go, TestSingleSQL / TestAnalyzeFuncAlias1: the mock streams of
-- mocknode/mock_data.go as files, in the order eKuiper sends them.
CREATE STREAM demo ( color STRING, size BIGINT, ts BIGINT ) WITH (DATASOURCE="demo.jsonl", TYPE="file", FORMAT="json");
