CREATE STREAM demo () WITH (TYPE="file", DATASOURCE="people.csv");
