-- From eKuiper internal/topo/topotest/rule_test.go, TestSingleSQL / TestSingleSQLRule4: the mock streams of
-- mocknode/mock_data.go as files, in the order eKuiper sends them.
CREATE STREAM demoError ( color STRING, size BIGINT, ts BIGINT ) WITH (DATASOURCE="demoError.jsonl", TYPE="file", FORMAT="json",STRICT_VALIDATION="true");
