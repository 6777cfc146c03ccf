-- From eKuiper internal/topo/topotest/rule_test.go, TestSingleSQL / TestSingleSQLRule11: the mock streams of
-- mocknode/mock_data.go as files, in the order eKuiper sends them. eKuiper runs the rule on its mock processing
-- clock, moved to each row's mock time before the row is sent, and its table takes rows while the rule runs: it runs
-- here on the replay clock (args.txt) on `mock_ts`, each row's mock time, so the table takes each row at that time.
CREATE STREAM demo ( color STRING, size BIGINT, ts BIGINT, mock_ts BIGINT ) WITH (DATASOURCE="demo.jsonl", TYPE="file", FORMAT="json");
CREATE TABLE demoTable ( device STRING, ts BIGINT, mock_ts BIGINT ) WITH (DATASOURCE="demoTable.jsonl", TYPE="file", RETAIN_SIZE="3");
