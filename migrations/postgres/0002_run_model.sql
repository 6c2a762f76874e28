-- The reconciled model of a run (per resource: kind, name, desired, observed, status), stored
-- content-addressed in blobs: unchanged models across runs share one blob.
ALTER TABLE runs ADD COLUMN model_blob TEXT NULL REFERENCES blobs (hash);
CREATE INDEX runs_model_blob ON runs (model_blob) WHERE model_blob IS NOT NULL;
