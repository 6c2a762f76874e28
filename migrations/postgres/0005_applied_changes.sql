-- What each run changed live: one row per change a provider was asked to make, with the
-- value before (as observed when the change was planned) and after (as asked), and what came
-- of it:
--  * `applied`: the provider accepted it and a re-observation of the provider after the apply
--    shows the resource as Git declares it;
--  * `unconfirmed`: the provider accepted it, but the re-observation still shows a difference
--    or could not be made;
--  * `failed`: the provider refused it or the call failed (`error` says how).
-- Rows go with their run (retention deletes them with it).
CREATE TABLE applied_changes (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id     BIGINT  NOT NULL,
    provider   TEXT    NOT NULL CHECK (length(provider) > 0),
    action     TEXT    NOT NULL CHECK (action IN ('create', 'update', 'delete')),
    kind       TEXT    NOT NULL CHECK (length(kind) > 0),
    name       TEXT    NOT NULL CHECK (length(name) > 0),
    before_value TEXT,
    after_value  TEXT,
    result     TEXT    NOT NULL CHECK (result IN ('applied', 'unconfirmed', 'failed')),
    error      TEXT,
    applied_at BIGINT  NOT NULL
);
CREATE INDEX applied_changes_run ON applied_changes (run_id, id);
CREATE INDEX applied_changes_resource ON applied_changes (kind, name, id);
