-- A capture replayed in its recorded processing time (`--replay-time ts`): windows fire when the rows' times pass
-- their ends, and `tstamp()` reads the replayed clock. WHERE runs on each row before a processing-time window, as
-- eKuiper's planner pushes it down: [4000, 5000), whose one row fails it, is an empty window (count 0). A row
-- recorded before the one before it (1900, 3100) counts at the clock's time; the row without `ts` is an error in
-- its place; after the last row the clock runs on 1 s (`--replay-after 1s`), firing the window ending meanwhile.
CREATE STREAM demo (size BIGINT, ts BIGINT) WITH (TYPE="file", DATASOURCE="events.jsonl", FORMAT="json");
