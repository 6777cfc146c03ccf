-- STRICT_VALIDATION holds the columns the rule reads to their types (as eKuiper's planner prunes
-- the schema to them): `color` is not read, so a number there does not fail the row.
CREATE STREAM s (id BIGINT, size BIGINT, color STRING) WITH (TYPE="file", DATASOURCE="input.jsonl", FORMAT="json", STRICT_VALIDATION="true");
