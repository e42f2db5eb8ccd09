-- anypod schema v2 (SQLite). Stream chunks are keyed by one sequence, so that appending a chunk
-- to an active job is one INSERT in every dialect (store/sql.py), and belong to their job:
-- deleting a job deletes its chunks. jobs.stream_seq goes. workers.job_ids holds a JSON array.
CREATE TABLE stream_chunks_v2 (
    seq    INTEGER PRIMARY KEY,
    job_id TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    output BLOB    NOT NULL
);
INSERT INTO stream_chunks_v2 (job_id, output)
    SELECT job_id, output FROM stream_chunks
    WHERE EXISTS (SELECT 1 FROM jobs WHERE jobs.id = stream_chunks.job_id)
    ORDER BY job_id, n;
DROP TABLE stream_chunks;
ALTER TABLE stream_chunks_v2 RENAME TO stream_chunks;
CREATE INDEX stream_chunks_job ON stream_chunks (job_id, seq);
ALTER TABLE jobs DROP COLUMN stream_seq;
UPDATE workers SET job_ids = '[]';
