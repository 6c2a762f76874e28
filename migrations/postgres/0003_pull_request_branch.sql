-- One pull request per branch (one branch per change set, updated in place). Rows written
-- before this migration could repeat a branch: the newest row of each branch is kept.
DELETE FROM pull_requests WHERE id NOT IN (SELECT MAX(id) FROM pull_requests GROUP BY branch);
CREATE UNIQUE INDEX pull_requests_branch ON pull_requests (branch);
CREATE INDEX pull_requests_open ON pull_requests (id) WHERE state = 'open';
