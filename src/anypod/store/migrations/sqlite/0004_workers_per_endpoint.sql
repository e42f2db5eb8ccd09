-- anypod schema v4 (SQLite). A worker is known by its endpoint and its id: a worker token of one
-- endpoint can no longer take over (or be blocked by) a worker of another endpoint that uses
-- the same id. The table only holds the last ping of each worker: it is recreated empty.
DROP TABLE workers;
CREATE TABLE workers (
    id         TEXT NOT NULL,
    endpoint   TEXT NOT NULL,
    last_seen  REAL NOT NULL,
    job_ids    TEXT NOT NULL DEFAULT '[]',
    gpu        TEXT,
    version    TEXT,
    unhealthy  TEXT,
    PRIMARY KEY (endpoint, id)
);
