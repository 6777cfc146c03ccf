-- From eKuiper internal/topo/topotest/rule_test.go, TestSingleSQLOmitError / TestSingleSQLErrorRule2: the mock streams of
-- mocknode/mock_data.go as files, in the order eKuiper sends them.
CREATE STREAM ldemo ( ) WITH (DATASOURCE="ldemo.jsonl", TYPE="file", FORMAT="json");
