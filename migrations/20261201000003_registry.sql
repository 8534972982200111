-- The built-in OCI registry (`/v2/`). Blob bytes live on disk, content-addressed under the
-- registry directory (one file per digest however many repositories use it); what refers to
-- what lives here.

-- A repository is `<team>/<name>`, created by its first push and owned by the team.
CREATE TABLE registry_repositories (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id     uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    -- The part after `<team>/`.
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (team_id, name)
);

-- One row per blob file on disk.
CREATE TABLE registry_blobs (
    digest      text PRIMARY KEY,
    size        bigint NOT NULL CHECK (size >= 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The blobs a repository may serve: pushed or mounted there. A blob of another repository is
-- unknown here, even when its bytes sit in the shared store.
CREATE TABLE registry_repository_blobs (
    repository_id  uuid NOT NULL REFERENCES registry_repositories (id) ON DELETE CASCADE,
    digest         text NOT NULL REFERENCES registry_blobs (digest),
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX registry_repository_blobs_digest_idx ON registry_repository_blobs (digest);

-- Manifests are small (at most 4 MiB): their exact bytes are kept here.
CREATE TABLE registry_manifests (
    repository_id  uuid NOT NULL REFERENCES registry_repositories (id) ON DELETE CASCADE,
    digest         text NOT NULL,
    media_type     text NOT NULL,
    content        bytea NOT NULL,
    -- Config and layers (or, for an index, nothing: its children are manifests), for garbage
    -- collection and the size shown.
    blobs          text[] NOT NULL,
    -- The manifests an index lists.
    children       text[] NOT NULL,
    -- The manifest plus its blobs.
    total_size     bigint NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repository_id, digest)
);

CREATE TABLE registry_tags (
    repository_id  uuid NOT NULL REFERENCES registry_repositories (id) ON DELETE CASCADE,
    tag            text NOT NULL,
    digest         text NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repository_id, tag),
    FOREIGN KEY (repository_id, digest)
        REFERENCES registry_manifests (repository_id, digest) ON DELETE CASCADE
);

-- An upload session; its bytes so far are in `uploads/<id>` of the registry directory.
CREATE TABLE registry_uploads (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    repository_id  uuid NOT NULL REFERENCES registry_repositories (id) ON DELETE CASCADE,
    size           bigint NOT NULL DEFAULT 0,
    started_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- A push of this tag to `<team>/<app>` deploys the app (NULL: pushes never deploy).
ALTER TABLE apps
    ADD COLUMN deploy_on_push text DEFAULT 'latest'
        CHECK (deploy_on_push ~ '^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$');

-- Where a release's image comes from: this server's registry (pinned by digest, pulled with
-- the team's credential) or elsewhere (a public registry, an image built on the node).
ALTER TABLE releases
    ADD COLUMN image_source text NOT NULL DEFAULT 'external'
        CHECK (image_source IN ('registry', 'external'));
