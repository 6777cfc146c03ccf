-- Without a window, each row of demo joined with the table is a list of joined rows, which the
-- aggregates take as one group (eKuiper: the project operator over its JoinTuples); a row that
-- joins nothing sends nothing.
CREATE STREAM demo ( color STRING, size BIGINT, ts BIGINT ) WITH (DATASOURCE="demo.jsonl", TYPE="file", FORMAT="json");
CREATE TABLE table1 ( name STRING, size BIGINT, id BIGINT ) WITH (DATASOURCE="lookup.json", TYPE="file", FORMAT="json", STRICT_VALIDATION="true");
