-- anypod schema v2 (PostgreSQL). Stream chunks are keyed by one sequence, so that appending a
-- chunk to an active job is one INSERT in every dialect (store/sql.py); jobs.stream_seq goes.
CREATE TABLE stream_chunks_v2 (
    seq    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id text   NOT NULL,
    output bytea  NOT NULL
);
INSERT INTO stream_chunks_v2 (job_id, output)
    SELECT job_id, output FROM stream_chunks ORDER BY job_id, n;
DROP TABLE stream_chunks;
ALTER TABLE stream_chunks_v2 RENAME TO stream_chunks;
ALTER INDEX stream_chunks_v2_pkey RENAME TO stream_chunks_pkey;
CREATE INDEX stream_chunks_job ON stream_chunks (job_id, seq);
ALTER TABLE jobs DROP COLUMN stream_seq;
