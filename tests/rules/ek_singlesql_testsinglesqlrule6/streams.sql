-- From eKuiper internal/topo/topotest/rule_test.go, TestSingleSQL / TestSingleSQLRule6: the mock streams of
-- mocknode/mock_data.go as files, in the order eKuiper sends them.
-- eKuiper's mock source gives every row the metadata {"topic": "mock"}; so does a memory stream on the
-- topic `mock` (a memory action attaches its topic, as eKuiper's memory sink does): the rule `mock` feeds
-- the mock data to it.
CREATE STREAM mock_data ( color STRING, size BIGINT, ts BIGINT ) WITH (DATASOURCE="demo.jsonl", TYPE="file", FORMAT="json");
CREATE STREAM demo ( color STRING, size BIGINT, ts BIGINT ) WITH (DATASOURCE="mock", TYPE="memory", FORMAT="json");
