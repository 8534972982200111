-- A cursor's stamp to the nanosecond (Postgres keeps microseconds). A restarted agent skips
-- what it already shipped by stamp: from a cursor cut to the microsecond it read the last
-- line it had shipped again, stamped a few hundred nanoseconds later than the cut, and stored
-- it twice (issue 10's benchmark: one repeated line per agent restart). `ts_nanos` is what
-- `ts` lost: the nanoseconds past its microsecond. A cursor from before this migration counts
-- as the end of its microsecond.
ALTER TABLE log_cursors ADD COLUMN ts_nanos integer NOT NULL DEFAULT 999
    CHECK (ts_nanos BETWEEN 0 AND 999);
ALTER TABLE log_cursors ALTER COLUMN ts_nanos DROP DEFAULT;
