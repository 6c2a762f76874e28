-- The status pages (`src/web/`) audit their logins and logouts as actor kind `web`.
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt (nothing references
-- audit_log by foreign key) and its index recreated.
CREATE TABLE audit_log_v10 (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    actor_kind TEXT    NOT NULL CHECK (actor_kind IN ('controller', 'cli', 'mcp', 'web')),
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    target     TEXT,
    details    TEXT    NOT NULL DEFAULT '{}'
);
INSERT INTO audit_log_v10 (id, at, actor_kind, actor, action, target, details)
    SELECT id, at, actor_kind, actor, action, target, details FROM audit_log;
DROP TABLE audit_log;
ALTER TABLE audit_log_v10 RENAME TO audit_log;
CREATE INDEX audit_log_at ON audit_log (at);
-- A run's page lists the deviations it opened and resolved.
CREATE INDEX deviations_opened_run ON deviations (opened_run);
CREATE INDEX deviations_resolved_run ON deviations (resolved_run) WHERE resolved_run IS NOT NULL;
-- How each provider's observation went in each run: the pages show providers up or down
-- with their latency, and a run's time per provider. Rows go with their run (retention
-- deletes them with it).
CREATE TABLE run_providers (
    run_id     INTEGER NOT NULL,
    provider   TEXT    NOT NULL CHECK (length(provider) > 0),
    asked      INTEGER NOT NULL CHECK (asked IN (0, 1)),
    answered   INTEGER NOT NULL CHECK (answered IN (0, 1)),
    observe_ms INTEGER NOT NULL CHECK (observe_ms >= 0),
    error      TEXT,
    PRIMARY KEY (run_id, provider)
);
