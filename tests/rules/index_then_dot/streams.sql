-- A newcomer's eKuiper habit: an array element's field with `.` (`tele[0].Tag00001`), as well as `->`.
CREATE STREAM demo () WITH (TYPE="file", DATASOURCE="events.jsonl");
