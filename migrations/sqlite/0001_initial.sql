-- labctl state store, initial schema (SQLite). Forward-only.
-- Times are unix milliseconds (INTEGER), booleans 0/1, JSON as TEXT.

CREATE TABLE runs (
    id                  INTEGER PRIMARY KEY,
    trigger             TEXT    NOT NULL,
    controller          TEXT    NOT NULL,
    started_at          INTEGER NOT NULL,
    finished_at         INTEGER,
    commit_sha          TEXT,
    outcome             TEXT    NOT NULL DEFAULT 'running'
        CHECK (outcome IN ('running', 'succeeded', 'failed', 'aborted')),
    resources           INTEGER NOT NULL DEFAULT 0 CHECK (resources >= 0),
    deviations_open     INTEGER NOT NULL DEFAULT 0 CHECK (deviations_open >= 0),
    deviations_opened   INTEGER NOT NULL DEFAULT 0 CHECK (deviations_opened >= 0),
    deviations_resolved INTEGER NOT NULL DEFAULT 0 CHECK (deviations_resolved >= 0),
    error               TEXT,
    CHECK ((outcome = 'running') = (finished_at IS NULL))
);
CREATE INDEX runs_started_at ON runs (started_at);
CREATE INDEX runs_running ON runs (outcome) WHERE outcome = 'running';

CREATE TABLE blobs (
    hash       TEXT    PRIMARY KEY CHECK (length(hash) = 64),
    body       TEXT    NOT NULL,
    size       INTEGER NOT NULL CHECK (size >= 0),
    created_at INTEGER NOT NULL
);

CREATE TABLE desired_snapshots (
    commit_sha    TEXT    PRIMARY KEY CHECK (length(commit_sha) > 0),
    blob_hash     TEXT    NOT NULL REFERENCES blobs (hash),
    first_seen_at INTEGER NOT NULL
);

CREATE TABLE observed_snapshots (
    id            INTEGER PRIMARY KEY,
    provider      TEXT    NOT NULL CHECK (length(provider) > 0),
    blob_hash     TEXT    NOT NULL REFERENCES blobs (hash),
    first_run     INTEGER NOT NULL,
    last_run      INTEGER NOT NULL,
    first_seen_at INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL
);
CREATE INDEX observed_snapshots_provider ON observed_snapshots (provider, id);
CREATE INDEX observed_snapshots_blob ON observed_snapshots (blob_hash);

CREATE TABLE deviations (
    id               INTEGER PRIMARY KEY,
    kind             TEXT    NOT NULL CHECK (length(kind) > 0),
    name             TEXT    NOT NULL CHECK (length(name) > 0),
    field_path       TEXT    NOT NULL DEFAULT '',
    dtype            TEXT    NOT NULL
        CHECK (dtype IN ('missing', 'unmanaged', 'drifted', 'unknown')),
    severity         TEXT    NOT NULL
        CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    auto_correctable INTEGER NOT NULL CHECK (auto_correctable IN (0, 1)),
    remediation      TEXT,
    expected         TEXT,
    actual           TEXT,
    opened_at        INTEGER NOT NULL,
    opened_run       INTEGER NOT NULL,
    last_seen_at     INTEGER NOT NULL,
    last_seen_run    INTEGER NOT NULL,
    seen_count       INTEGER NOT NULL DEFAULT 1 CHECK (seen_count >= 1),
    resolved_at      INTEGER,
    resolved_run     INTEGER,
    resolved_commit  TEXT
);
CREATE UNIQUE INDEX deviations_open_identity
    ON deviations (kind, name, field_path) WHERE resolved_at IS NULL;
CREATE INDEX deviations_open_kind_severity
    ON deviations (kind, severity) WHERE resolved_at IS NULL;
CREATE INDEX deviations_identity ON deviations (kind, name, field_path, id);

CREATE TABLE pull_requests (
    id             INTEGER PRIMARY KEY,
    branch         TEXT    NOT NULL,
    url            TEXT,
    number         INTEGER,
    state          TEXT    NOT NULL CHECK (state IN ('open', 'merged', 'closed')),
    deviation_keys TEXT    NOT NULL DEFAULT '[]',
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    actor_kind TEXT    NOT NULL CHECK (actor_kind IN ('controller', 'cli', 'mcp')),
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    target     TEXT,
    details    TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);
