-- eKuiper internal/topo/planner/analyzer.go (aliases bind in HAVING, WHERE and later SELECT fields);
-- internal/topo/topotest/rule_test.go TestAliasSQL-style statements.
CREATE STREAM demo (color STRING, size BIGINT, ts BIGINT) WITH (TYPE="file", DATASOURCE="events.jsonl", TIMESTAMP="ts");
