-- json_path_query, json_path_query_first and json_path_exists as eKuiper has them: a definite path
-- gives its value, other paths the array of their matches; the row without sensors is filtered.
CREATE STREAM demo () WITH (TYPE="file", DATASOURCE="input.jsonl");
