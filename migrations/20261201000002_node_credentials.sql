-- Per-node credentials, join token lifetimes, node removal, and the platform audit log.

-- A node belongs to the credential that registered it: its agent made the secret, presented it
-- with a join token at its first connection, and from then on connects with it alone. Only its
-- SHA-256 is kept. Nodes registered before credentials existed have none until their agent
-- connects again with a join token.
ALTER TABLE nodes
    ADD COLUMN credential_hash bytea UNIQUE,
    ADD COLUMN join_token_id uuid REFERENCES join_tokens (id) ON DELETE SET NULL,
    -- Removed by an admin: drained, then deleted (which ends its credential).
    ADD COLUMN removing boolean NOT NULL DEFAULT false;

-- Join tokens always expire now (24 hours unless asked otherwise); one made before lives 24
-- hours from this migration.
UPDATE join_tokens SET expires_at = now() + interval '24 hours' WHERE expires_at IS NULL;
ALTER TABLE join_tokens ALTER COLUMN expires_at SET NOT NULL;

-- Platform-wide actions (nodes, join tokens), read by platform admins. Like the teams' audit
-- log, it never holds a secret.
CREATE TABLE platform_audit_events (
    id              bigserial PRIMARY KEY,
    actor_user_id   uuid,
    actor           text NOT NULL,
    action          text NOT NULL,
    target          text NOT NULL,
    details         jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX platform_audit_events_idx ON platform_audit_events (id DESC);
