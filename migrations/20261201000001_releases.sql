-- Releases and rollouts (above the Cluster seam), and the embedded cluster's release sets
-- (below it).

-- An app without a port is a worker: not routed, ready once running.
ALTER TABLE apps ALTER COLUMN port DROP NOT NULL;
ALTER TABLE apps
    ADD COLUMN stop_grace_seconds integer NOT NULL DEFAULT 30
        CHECK (stop_grace_seconds BETWEEN 0 AND 3600),
    ADD COLUMN progress_deadline_seconds integer NOT NULL DEFAULT 300
        CHECK (progress_deadline_seconds BETWEEN 5 AND 86400),
    ADD COLUMN strategy jsonb NOT NULL
        DEFAULT '{"kind": "rolling", "max_surge": 1, "max_unavailable": 0}';
-- What an app runs now lives in its releases. An app deployed before releases existed keeps its
-- image here until the server's next start turns it into its release v1
-- (releases::adopt_legacy_deploys), which then clears it.
ALTER TABLE apps RENAME COLUMN image TO legacy_image;

-- Every change that alters what runs is a release: immutable but for its status and rollout
-- progress.
CREATE TABLE releases (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id            uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    app_id             uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    version            integer NOT NULL CHECK (version > 0),
    status             text NOT NULL CHECK (status IN ('pending', 'rolling_out', 'active',
                           'failed', 'superseded', 'aborted')),
    reason             text,
    image              text NOT NULL,
    image_digest       text,
    port               integer CHECK (port BETWEEN 1 AND 65535),
    cpu_millis         integer NOT NULL,
    memory_mib         integer NOT NULL,
    health_check_path  text NOT NULL,
    -- The app's config vars when the release was made: one sealed JSON object (bound to the app
    -- and the version), opened only to run the release or to restore it on rollback. The names
    -- are kept apart for display.
    config_sealed      bytea NOT NULL,
    config_keys        text[] NOT NULL,
    cause              text NOT NULL,
    rollback_of        integer,
    actor              text NOT NULL,
    actor_user_id      uuid,
    actor_token_id     uuid,
    created_at         timestamptz NOT NULL DEFAULT now(),
    -- The rollout: when it started; when it last made progress (more new instances ready than
    -- `ready_seen`); when the release became active (which makes it a release to roll back to);
    -- when it ended (active, failed, superseded).
    started_at         timestamptz,
    progressed_at      timestamptz,
    ready_seen         integer NOT NULL DEFAULT 0,
    activated_at       timestamptz,
    finished_at        timestamptz,
    UNIQUE (app_id, version)
);
-- At most one release of an app serves, and at most one is on its way.
CREATE UNIQUE INDEX releases_one_active ON releases (app_id) WHERE status = 'active';
CREATE UNIQUE INDEX releases_one_in_flight ON releases (app_id)
    WHERE status IN ('pending', 'rolling_out');

-- The embedded cluster's release sets: what `Cluster::apply` was asked to run, one row per
-- release (the Kubernetes cluster keeps a Deployment instead). The spec is frozen; replicas,
-- stop grace and ready timeout follow the app. A removed set keeps its row while its instances
-- drain and stop.
CREATE TABLE release_sets (
    release_id             uuid PRIMARY KEY,
    cluster_id             uuid NOT NULL REFERENCES clusters (id),
    team_id                uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    app_id                 uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    version                integer NOT NULL,
    replicas               integer NOT NULL CHECK (replicas >= 0),
    removed                boolean NOT NULL DEFAULT false,
    image                  text NOT NULL,
    -- The image id the first instance ran; later instances must run the same.
    image_digest           text,
    port                   integer,
    cpu_millis             integer NOT NULL,
    memory_mib             integer NOT NULL,
    health_check_path      text NOT NULL,
    -- The containers' environment (config vars, PORT, GANTRY_*), sealed like config vars.
    env_sealed             bytea NOT NULL,
    stop_grace_seconds     integer NOT NULL,
    ready_timeout_seconds  integer NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX release_sets_app_idx ON release_sets (app_id);

-- Instances belong to a release set. Taking one out goes run → drain (out of the route, its
-- requests in flight finish) → stop (SIGTERM, grace, SIGKILL) → row deleted when the agent
-- reports its container gone.
ALTER TABLE instances
    ADD COLUMN release_id uuid REFERENCES release_sets (release_id) ON DELETE CASCADE,
    ADD COLUMN drain_started_at timestamptz,
    ALTER COLUMN port DROP NOT NULL,
    DROP CONSTRAINT instances_desired_check,
    ADD CONSTRAINT instances_desired_check CHECK (desired IN ('run', 'drain', 'stop')),
    DROP CONSTRAINT instances_state_check,
    ADD CONSTRAINT instances_state_check CHECK (state IN ('pending', 'creating', 'running',
        'ready', 'crash_loop', 'image_pull_error', 'draining', 'stopping', 'stopped', 'lost'));
CREATE INDEX instances_release_idx ON instances (release_id);
