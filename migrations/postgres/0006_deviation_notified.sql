-- When a deviation's life cycle was announced to the notification targets of `labctl serve`:
-- each opened deviation is sent once; a reopened one is a new row and is sent again.
ALTER TABLE deviations ADD COLUMN notified_at BIGINT;
CREATE INDEX deviations_unnotified ON deviations (severity) WHERE resolved_at IS NULL AND notified_at IS NULL;
