-- Progressive delivery: a release's rollout keeps the strategy it started with and, for canary
-- and blue-green, where it is (step, traffic weight, pause, promotion), so that a restarted
-- server resumes it exactly there.
ALTER TABLE releases
    -- The app's strategy when the rollout started (NULL until it starts).
    ADD COLUMN strategy jsonb,
    -- Canary: index of the step under way (= number of steps once all are done). Blue-green:
    -- 0 while the new release comes up, 1 once it is ready, 2 once promoted.
    ADD COLUMN step integer NOT NULL DEFAULT 0 CHECK (step >= 0),
    -- Percent of the main host's traffic this release gets during its rollout.
    ADD COLUMN weight integer NOT NULL DEFAULT 0 CHECK (weight BETWEEN 0 AND 100),
    ADD COLUMN step_started_at timestamptz,
    -- Paused by a person: no step advances.
    ADD COLUMN paused boolean NOT NULL DEFAULT false,
    -- A person asked for promotion; the controller takes it at its next pass. `promote_full`
    -- skips every remaining canary step.
    ADD COLUMN promote_requested boolean NOT NULL DEFAULT false,
    ADD COLUMN promote_full boolean NOT NULL DEFAULT false,
    -- Blue-green: when all traffic flipped to this release.
    ADD COLUMN promoted_at timestamptz;

-- Every transition of a rollout, with its reason (also written to the app's events).
CREATE TABLE rollout_transitions (
    id          bigserial PRIMARY KEY,
    release_id  uuid NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    step        integer NOT NULL,
    weight      integer NOT NULL,
    text        text NOT NULL
);
CREATE INDEX rollout_transitions_release_idx ON rollout_transitions (release_id, id);

-- The autoscaler: an app's policy (NULL: off) and the decisions that changed (or held) its
-- replica count, with their inputs.
ALTER TABLE apps ADD COLUMN autoscaling jsonb;
CREATE TABLE autoscaler_decisions (
    id                bigserial PRIMARY KEY,
    team_id           uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    app_id            uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    at                timestamptz NOT NULL DEFAULT now(),
    from_replicas     integer NOT NULL,
    to_replicas       integer NOT NULL,
    cpu_percent       double precision,
    rps_per_instance  double precision,
    reason            text NOT NULL
);
CREATE INDEX autoscaler_decisions_app_idx ON autoscaler_decisions (app_id, id);

-- Team quotas, set by a platform admin; NULL: the platform's defaults (the server's
-- GANTRY_TEAM_QUOTA_* settings).
ALTER TABLE teams
    ADD COLUMN quota_apps integer CHECK (quota_apps >= 0),
    ADD COLUMN quota_instances integer CHECK (quota_instances >= 0),
    ADD COLUMN quota_cpu_millis integer CHECK (quota_cpu_millis >= 0),
    ADD COLUMN quota_memory_mib integer CHECK (quota_memory_mib >= 0);
