-- The embedded cluster: worker nodes, the tokens that let them join, and app instances.

-- What an app runs: the deployed image (NULL until the first deploy).
ALTER TABLE apps ADD COLUMN image text;

CREATE TABLE join_tokens (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    cluster_id   uuid NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    -- NULL for the token `gantry up` makes for its own local agent at each start.
    created_by   uuid REFERENCES users (id) ON DELETE CASCADE,
    secret_hash  bytea NOT NULL UNIQUE,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE nodes (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    cluster_id     uuid NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    name           text NOT NULL,
    address        text NOT NULL,
    labels         jsonb NOT NULL DEFAULT '{}',
    cpu_millis     bigint NOT NULL CHECK (cpu_millis >= 0),
    memory_mib     bigint NOT NULL CHECK (memory_mib >= 0),
    agent_version  text NOT NULL,
    -- Set by the reconciler when heartbeats stop for longer than the node timeout; cleared by
    -- the next hello or heartbeat.
    down           boolean NOT NULL DEFAULT false,
    cordoned       boolean NOT NULL DEFAULT false,
    draining       boolean NOT NULL DEFAULT false,
    -- Bumped each time the node's desired set changes, so the agent's reports can be matched.
    generation     bigint NOT NULL DEFAULT 0,
    last_seen_at   timestamptz NOT NULL DEFAULT now(),
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (cluster_id, name)
);

-- One row per instance (replica). The spec columns are frozen at creation: an app whose image
-- or settings change gets new instances, and the old ones are stopped once those are ready.
CREATE TABLE instances (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id            uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    app_id             uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    node_id            uuid REFERENCES nodes (id) ON DELETE SET NULL,
    image              text NOT NULL,
    port               integer NOT NULL,
    cpu_millis         integer NOT NULL,
    memory_mib         integer NOT NULL,
    health_check_path  text NOT NULL,
    -- 'run' while wanted; 'stop' once the reconciler decided to remove it (the row goes when the
    -- agent reports the container gone).
    desired            text NOT NULL CHECK (desired IN ('run', 'stop')),
    state              text NOT NULL CHECK (state IN ('pending', 'creating', 'running', 'ready',
                           'crash_loop', 'image_pull_error', 'stopping', 'stopped', 'lost')),
    reason             text,
    host_port          integer,
    restarts           integer NOT NULL DEFAULT 0,
    last_exit_code     bigint,
    started_at         timestamptz,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX instances_app_idx ON instances (app_id);
CREATE INDEX instances_node_idx ON instances (node_id);
