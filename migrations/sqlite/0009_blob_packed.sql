-- A body written from now on is kept compressed: `packed` holds its canonical JSON text
-- deflated (zlib, RFC 1950), `size` the text's length, and `body` is empty. Bodies written
-- before keep their text in `body` and no `packed`. The content address (`hash`) is always
-- the SHA-256 of the text, so an unchanged body is still stored once.
ALTER TABLE blobs ADD COLUMN packed BLOB;
