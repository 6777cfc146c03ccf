-- From eKuiper internal/topo/topotest/rule_test.go, TestSharedSourceSchemaless / rule2: the mock streams of
-- mocknode/mock_data.go as files, in the order eKuiper sends them.
CREATE STREAM sharedDemo () WITH (DATASOURCE="sharedDemo.jsonl", TYPE="file", FORMAT="json");
