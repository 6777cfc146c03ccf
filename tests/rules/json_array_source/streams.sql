CREATE STREAM demo () WITH (TYPE="file", DATASOURCE="input.json");
