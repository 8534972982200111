-- The control plane's first schema: clusters, accounts, teams, API tokens, apps, config, audit.
-- Every row that belongs to a team carries team_id; tenant queries are always scoped by it.

-- Clusters are first-class from the start: every app targets one. The embedded cluster (Gantry's
-- own orchestrator) always exists; Kubernetes clusters are registered later by a platform admin.
CREATE TABLE clusters (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE,
    kind        text NOT NULL CHECK (kind IN ('embedded', 'kubernetes')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO clusters (id, name, kind)
VALUES ('00000000-0000-0000-0000-000000000001', 'embedded', 'embedded');

CREATE TABLE users (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email              text NOT NULL UNIQUE,
    password_hash      text NOT NULL,
    is_platform_admin  boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE teams (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug        text NOT NULL UNIQUE,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE memberships (
    team_id     uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX memberships_user_idx ON memberships (user_id);

-- Secrets are stored as SHA-256 of the whole token (tokens are 256-bit random, so a fast hash is
-- enough); the prefix is kept only so a person can recognise a token in a list.
CREATE TABLE api_tokens (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id       uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    created_by    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          text NOT NULL,
    role          text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    secret_hash   bytea NOT NULL UNIQUE,
    prefix        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_tokens_creator_idx ON api_tokens (created_by);

CREATE TABLE apps (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id            uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    cluster_id         uuid NOT NULL REFERENCES clusters (id)
                       DEFAULT '00000000-0000-0000-0000-000000000001',
    name               text NOT NULL,
    port               integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    replicas           integer NOT NULL CHECK (replicas >= 0),
    cpu_millis         integer NOT NULL CHECK (cpu_millis > 0),
    memory_mib         integer NOT NULL CHECK (memory_mib > 0),
    health_check_path  text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (team_id, name)
);

-- Values are sealed with XChaCha20-Poly1305 under the server's secret key (nonce || ciphertext);
-- the app id and key are bound as associated data, so a value cannot be moved to another var.
CREATE TABLE app_config_vars (
    app_id      uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    team_id     uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    key         text NOT NULL,
    sealed      bytea NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, key)
);

-- Who did what, in which team. Actors are kept as ids and a readable label, so the log survives
-- the deletion of the user or token it names.
CREATE TABLE audit_events (
    id              bigserial PRIMARY KEY,
    team_id         uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    actor_user_id   uuid,
    actor_token_id  uuid,
    actor           text NOT NULL,
    action          text NOT NULL,
    target          text NOT NULL,
    details         jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_events_team_idx ON audit_events (team_id, id DESC);

-- Failed logins per e-mail (known or not, so the answer does not reveal which accounts exist).
CREATE TABLE login_throttle (
    email         text PRIMARY KEY,
    failures      integer NOT NULL,
    last_failure  timestamptz NOT NULL,
    locked_until  timestamptz
);

-- tower-sessions' Postgres store (same layout as PostgresStore::migrate), kept in this one
-- migration history.
CREATE SCHEMA tower_sessions;
CREATE TABLE tower_sessions.session (
    id           text PRIMARY KEY NOT NULL,
    data         bytea NOT NULL,
    expiry_date  timestamptz NOT NULL
);
