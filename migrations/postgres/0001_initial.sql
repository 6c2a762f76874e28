-- labctl state store, initial schema (PostgreSQL). Forward-only.
-- Times are unix milliseconds (BIGINT), booleans 0/1, JSON as TEXT.

CREATE TABLE runs (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trigger             TEXT    NOT NULL,
    controller          TEXT    NOT NULL,
    started_at          BIGINT  NOT NULL,
    finished_at         BIGINT,
    commit_sha          TEXT,
    outcome             TEXT    NOT NULL DEFAULT 'running'
        CHECK (outcome IN ('running', 'succeeded', 'failed', 'aborted')),
    resources           BIGINT  NOT NULL DEFAULT 0 CHECK (resources >= 0),
    deviations_open     BIGINT  NOT NULL DEFAULT 0 CHECK (deviations_open >= 0),
    deviations_opened   BIGINT  NOT NULL DEFAULT 0 CHECK (deviations_opened >= 0),
    deviations_resolved BIGINT  NOT NULL DEFAULT 0 CHECK (deviations_resolved >= 0),
    error               TEXT,
    CHECK ((outcome = 'running') = (finished_at IS NULL))
);
CREATE INDEX runs_started_at ON runs (started_at);
CREATE INDEX runs_running ON runs (outcome) WHERE outcome = 'running';

CREATE TABLE blobs (
    hash       TEXT    PRIMARY KEY CHECK (length(hash) = 64),
    body       TEXT    NOT NULL,
    size       BIGINT  NOT NULL CHECK (size >= 0),
    created_at BIGINT  NOT NULL
);

CREATE TABLE desired_snapshots (
    commit_sha    TEXT    PRIMARY KEY CHECK (length(commit_sha) > 0),
    blob_hash     TEXT    NOT NULL REFERENCES blobs (hash),
    first_seen_at BIGINT  NOT NULL
);

CREATE TABLE observed_snapshots (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider      TEXT    NOT NULL CHECK (length(provider) > 0),
    blob_hash     TEXT    NOT NULL REFERENCES blobs (hash),
    first_run     BIGINT  NOT NULL,
    last_run      BIGINT  NOT NULL,
    first_seen_at BIGINT  NOT NULL,
    last_seen_at  BIGINT  NOT NULL
);
CREATE INDEX observed_snapshots_provider ON observed_snapshots (provider, id);
CREATE INDEX observed_snapshots_blob ON observed_snapshots (blob_hash);

CREATE TABLE deviations (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             TEXT    NOT NULL CHECK (length(kind) > 0),
    name             TEXT    NOT NULL CHECK (length(name) > 0),
    field_path       TEXT    NOT NULL DEFAULT '',
    dtype            TEXT    NOT NULL
        CHECK (dtype IN ('missing', 'unmanaged', 'drifted', 'unknown')),
    severity         TEXT    NOT NULL
        CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    auto_correctable BIGINT  NOT NULL CHECK (auto_correctable IN (0, 1)),
    remediation      TEXT,
    expected         TEXT,
    actual           TEXT,
    opened_at        BIGINT  NOT NULL,
    opened_run       BIGINT  NOT NULL,
    last_seen_at     BIGINT  NOT NULL,
    last_seen_run    BIGINT  NOT NULL,
    seen_count       BIGINT  NOT NULL DEFAULT 1 CHECK (seen_count >= 1),
    resolved_at      BIGINT,
    resolved_run     BIGINT,
    resolved_commit  TEXT
);
CREATE UNIQUE INDEX deviations_open_identity
    ON deviations (kind, name, field_path) WHERE resolved_at IS NULL;
CREATE INDEX deviations_open_kind_severity
    ON deviations (kind, severity) WHERE resolved_at IS NULL;
CREATE INDEX deviations_identity ON deviations (kind, name, field_path, id);

CREATE TABLE pull_requests (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    branch         TEXT    NOT NULL,
    url            TEXT,
    number         BIGINT,
    state          TEXT    NOT NULL CHECK (state IN ('open', 'merged', 'closed')),
    deviation_keys TEXT    NOT NULL DEFAULT '[]',
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL
);

CREATE TABLE audit_log (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         BIGINT  NOT NULL,
    actor_kind TEXT    NOT NULL CHECK (actor_kind IN ('controller', 'cli', 'mcp')),
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    target     TEXT,
    details    TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);
