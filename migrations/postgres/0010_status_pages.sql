-- The status pages (`src/web/`) audit their logins and logouts as actor kind `web`.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_actor_kind_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_actor_kind_check
    CHECK (actor_kind IN ('controller', 'cli', 'mcp', 'web'));
-- A run's page lists the deviations it opened and resolved.
CREATE INDEX deviations_opened_run ON deviations (opened_run);
CREATE INDEX deviations_resolved_run ON deviations (resolved_run) WHERE resolved_run IS NOT NULL;
-- How each provider's observation went in each run: the pages show providers up or down
-- with their latency, and a run's time per provider. Rows go with their run (retention
-- deletes them with it).
CREATE TABLE run_providers (
    run_id     BIGINT NOT NULL,
    provider   TEXT    NOT NULL CHECK (length(provider) > 0),
    asked      INTEGER NOT NULL CHECK (asked IN (0, 1)),
    answered   INTEGER NOT NULL CHECK (answered IN (0, 1)),
    observe_ms BIGINT NOT NULL CHECK (observe_ms >= 0),
    error      TEXT,
    PRIMARY KEY (run_id, provider)
);
