-- From eKuiper internal/topo/topotest/rule_test.go, TestSingleSQLForBinary / TestSingleSQLRule1: the mock stream
-- binDemo (mocknode/mock_data.go: one message, the image mocknode.Image) as a file read whole.
CREATE STREAM binDemo () WITH (DATASOURCE="binDemo.png", TYPE="file", FORMAT="BINARY");
