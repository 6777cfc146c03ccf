-- From eKuiper internal/topo/topotest/rule_test.go, TestSingleSQL / TestSingleSQLRule8: the mock streams of
-- mocknode/mock_data.go as files, in the order eKuiper sends them.
CREATE STREAM demo1 ( temp FLOAT, hum BIGINT,`from` STRING, ts BIGINT ) WITH (DATASOURCE="demo1.jsonl", TYPE="file", FORMAT="json");
