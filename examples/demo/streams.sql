-- Sensor readings, one JSON object per line. TIMESTAMP names the event-time field.
CREATE STREAM sensors (
    deviceId STRING,
    temperature FLOAT,
    humidity BIGINT,
    ts BIGINT
) WITH (TYPE="file", DATASOURCE="sensors.jsonl", FORMAT="json", TIMESTAMP="ts");
