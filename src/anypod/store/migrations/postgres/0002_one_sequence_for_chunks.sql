-- anypod schema v2 (PostgreSQL). Stream chunks are keyed by one sequence, so that appending a
-- chunk to an active job is one INSERT in every dialect (store/sql.py), and belong to their
-- job: deleting a job deletes its chunks. jobs.stream_seq goes.
-- Stop every replica of an older anypod before applying this (anypod migrate).
CREATE TABLE stream_chunks_v2 (
    seq    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id text   NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    output bytea  NOT NULL
);
INSERT INTO stream_chunks_v2 (job_id, output)
    SELECT job_id, output FROM stream_chunks
    WHERE EXISTS (SELECT 1 FROM jobs WHERE jobs.id = stream_chunks.job_id)
    ORDER BY job_id, n;
DROP TABLE stream_chunks;
ALTER TABLE stream_chunks_v2 RENAME TO stream_chunks;
ALTER INDEX stream_chunks_v2_pkey RENAME TO stream_chunks_pkey;
ALTER TABLE stream_chunks RENAME CONSTRAINT stream_chunks_v2_job_id_fkey TO stream_chunks_job_id_fkey;
CREATE INDEX stream_chunks_job ON stream_chunks (job_id, seq);
ALTER TABLE jobs DROP COLUMN stream_seq;
