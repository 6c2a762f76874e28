-- What a pull request proposed: a hash of its deviations and their live values. A pull request
-- a person closed keeps it, so the same change is not proposed again until the lab changes;
-- one labctl closed because its deviations resolved has none.
ALTER TABLE pull_requests ADD COLUMN fingerprint TEXT;
