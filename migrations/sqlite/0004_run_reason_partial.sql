-- Runs say why they ran and whether their picture was whole:
--  * `partial`: the run finished, but some resources (or whole providers) could not be
--    observed; it is no longer recorded as `succeeded`.
--  * `reason`: the typed reason of the run as JSON (the commit it moved to, the webhook, who
--    asked); `trigger` keeps its short label.
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt (nothing references
-- runs by foreign key) and its indexes recreated.
CREATE TABLE runs_v4 (
    id                  INTEGER PRIMARY KEY,
    trigger             TEXT    NOT NULL,
    controller          TEXT    NOT NULL,
    started_at          INTEGER NOT NULL,
    finished_at         INTEGER,
    commit_sha          TEXT,
    outcome             TEXT    NOT NULL DEFAULT 'running'
        CHECK (outcome IN ('running', 'succeeded', 'partial', 'failed', 'aborted')),
    resources           INTEGER NOT NULL DEFAULT 0 CHECK (resources >= 0),
    deviations_open     INTEGER NOT NULL DEFAULT 0 CHECK (deviations_open >= 0),
    deviations_opened   INTEGER NOT NULL DEFAULT 0 CHECK (deviations_opened >= 0),
    deviations_resolved INTEGER NOT NULL DEFAULT 0 CHECK (deviations_resolved >= 0),
    error               TEXT,
    model_blob          TEXT NULL REFERENCES blobs (hash),
    reason              TEXT NULL,
    CHECK ((outcome = 'running') = (finished_at IS NULL))
);
INSERT INTO runs_v4 (id, trigger, controller, started_at, finished_at, commit_sha, outcome,
                     resources, deviations_open, deviations_opened, deviations_resolved, error,
                     model_blob)
    SELECT id, trigger, controller, started_at, finished_at, commit_sha, outcome,
           resources, deviations_open, deviations_opened, deviations_resolved, error, model_blob
    FROM runs;
DROP TABLE runs;
ALTER TABLE runs_v4 RENAME TO runs;
CREATE INDEX runs_started_at ON runs (started_at);
CREATE INDEX runs_running ON runs (outcome) WHERE outcome = 'running';
CREATE INDEX runs_model_blob ON runs (model_blob) WHERE model_blob IS NOT NULL;
