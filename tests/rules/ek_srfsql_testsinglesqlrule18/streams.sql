-- From eKuiper internal/topo/topotest/rule_test.go, TestSRFSQL / TestSingleSQLRule18: the mock streams of
-- mocknode/mock_data.go as files, in the order eKuiper sends them.
CREATE STREAM demoArr () WITH (DATASOURCE="demoArr.jsonl", TYPE="file", FORMAT="json");
