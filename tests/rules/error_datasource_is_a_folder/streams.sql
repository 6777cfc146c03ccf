CREATE STREAM d () WITH (TYPE="file", DATASOURCE="events");
