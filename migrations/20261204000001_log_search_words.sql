-- Log search by words, indexed once per stored batch and app instead of once per line
-- (issue 10; backend/src/logs/search.rs has the rule and the reasons). With real log text the
-- per-line trigram index cost Postgres ~50 µs of CPU per line stored; a chunk's words ~3–9 µs.

DROP INDEX log_lines_line_idx;

-- One row per app and stored batch (or part of one): the ranges its lines' ids and stamps
-- span, and their distinct words (lowercase runs of ASCII letters and digits, cut to 64).
CREATE TABLE log_chunks (
    team_id   uuid NOT NULL,
    app_id    uuid NOT NULL,
    first_id  bigint NOT NULL,
    last_id   bigint NOT NULL,
    min_ts    timestamptz NOT NULL,
    max_ts    timestamptz NOT NULL,
    words     tsvector NOT NULL
);
-- A search walks an app's chunks newest first.
CREATE INDEX log_chunks_app_idx ON log_chunks (app_id, max_ts, last_id);
CREATE INDEX log_chunks_words_idx ON log_chunks USING gin (words);

-- The lines stored before: chunks of up to 50 lines of an app (at most 8 KiB each, so a
-- chunk's words stay far below a tsvector's 1 MB).
INSERT INTO log_chunks (team_id, app_id, first_id, last_id, min_ts, max_ts, words)
SELECT team_id, app_id, min(id), max(id), min(ts), max(ts),
       array_to_tsvector(coalesce(array_agg(DISTINCT left(w, 64)) FILTER (WHERE w <> ''), '{}'))
FROM (SELECT team_id, app_id, id, ts, id / 50 AS bucket,
             unnest(regexp_split_to_array(lower(line), '[^a-z0-9]+')) AS w
      FROM log_lines) AS x
GROUP BY team_id, app_id, bucket;

-- An app's chunks go with it, as its lines and cursors do.
CREATE OR REPLACE FUNCTION delete_app_logs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM log_lines WHERE app_id = OLD.id;
    DELETE FROM log_chunks WHERE app_id = OLD.id;
    DELETE FROM log_cursors WHERE app_id = OLD.id;
    RETURN NULL;
END
$$;
