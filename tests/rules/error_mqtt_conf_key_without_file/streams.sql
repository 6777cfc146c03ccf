CREATE STREAM demo () WITH (DATASOURCE="sensors/+/temp", CONF_KEY="edge");
