-- Runs say why they ran and whether their picture was whole:
--  * `partial`: the run finished, but some resources (or whole providers) could not be
--    observed; it is no longer recorded as `succeeded`.
--  * `reason`: the typed reason of the run as JSON (the commit it moved to, the webhook, who
--    asked); `trigger` keeps its short label.
ALTER TABLE runs DROP CONSTRAINT runs_outcome_check;
ALTER TABLE runs ADD CONSTRAINT runs_outcome_check
    CHECK (outcome IN ('running', 'succeeded', 'partial', 'failed', 'aborted'));
ALTER TABLE runs ADD COLUMN reason TEXT NULL;
