-- From eKuiper internal/topo/topotest/rule_test.go, TestSingleSQL / TestSingleSQLRule12: the mock streams of
-- mocknode/mock_data.go as files, in the order eKuiper sends them; `table1` is eKuiper's file table
-- over its test/lookup.json.
CREATE STREAM demo ( color STRING, size BIGINT, ts BIGINT ) WITH (DATASOURCE="demo.jsonl", TYPE="file", FORMAT="json");
CREATE TABLE table1 ( name STRING, size BIGINT, id BIGINT ) WITH (DATASOURCE="lookup.json", TYPE="file", FORMAT="json", STRICT_VALIDATION="true");
