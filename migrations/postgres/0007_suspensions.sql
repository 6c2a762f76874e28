-- Runtime suspensions (`labctl suspend`): while a row is here, labctl observes and records
-- what it covers but applies and proposes nothing for it. kind '' is the whole controller;
-- name '' is every resource of the kind. One row per scope: suspending again replaces it.
CREATE TABLE suspensions (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    since BIGINT NOT NULL,
    PRIMARY KEY (kind, name)
);
