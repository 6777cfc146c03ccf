CREATE STREAM demo () WITH (DATASOURCE="sensors/+/temp");
