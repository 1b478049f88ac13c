-- Dead-letter payloads are cut to their first 64 KiB wherever they are written (a bad
-- batch record can be 1 MiB, and JSON escaping could grow it past what Kafka accepts).
-- These columns keep what identifies the whole payload: its size in bytes and its
-- SHA-256 (hex). A row whose payload is shorter than payload_size holds only the head.
-- Rows written before this migration read 0 and '' here.

ALTER TABLE {database}.dead_letters
    ADD COLUMN IF NOT EXISTS payload_size UInt64 AFTER payload,
    ADD COLUMN IF NOT EXISTS payload_sha256 String AFTER payload_size;
