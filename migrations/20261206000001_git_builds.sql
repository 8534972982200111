-- Builds from `git push` (issue 12). An app's bare repository lives under the server's git
-- directory, named by the app's id; a push to its deploy branch is built before the branch moves.

-- How an app's pushes are built. Build args are sealed like config vars (one JSON object bound
-- to the app), their names kept apart for display.
ALTER TABLE apps
    ADD COLUMN deploy_branch     text NOT NULL DEFAULT 'main',
    ADD COLUMN dockerfile        text NOT NULL DEFAULT 'Dockerfile',
    ADD COLUMN build_args_sealed bytea,
    ADD COLUMN build_arg_names   text[] NOT NULL DEFAULT '{}';

CREATE TABLE builds (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id       uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    app_id        uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    -- 1, 2, 3… per app.
    number        integer NOT NULL CHECK (number > 0),
    status        text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed',
                      'cancelled')),
    commit_id     text NOT NULL CHECK (commit_id ~ '^([0-9a-f]{40}|[0-9a-f]{64})$'),
    branch        text NOT NULL,
    dockerfile    text NOT NULL,
    image         text,
    release       integer,
    message       text,
    node_id       uuid REFERENCES nodes (id) ON DELETE SET NULL,
    actor         text NOT NULL,
    actor_user_id uuid,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    UNIQUE (app_id, number)
);
CREATE INDEX builds_active_idx ON builds (status) WHERE status IN ('queued', 'running');

-- Build log lines join the app's log: `stream = 'build'`, with the build's number.
ALTER TABLE log_lines DROP CONSTRAINT log_lines_stream_check;
ALTER TABLE log_lines ADD CONSTRAINT log_lines_stream_check
    CHECK (stream IN ('stdout', 'stderr', 'event', 'build'));
ALTER TABLE log_lines ADD COLUMN build integer;
