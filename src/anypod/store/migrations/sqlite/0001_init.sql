-- anypod schema v1 (SQLite)
CREATE TABLE jobs (
    seq                  INTEGER PRIMARY KEY AUTOINCREMENT,
    id                   TEXT    NOT NULL UNIQUE,
    endpoint             TEXT    NOT NULL,
    status               TEXT    NOT NULL,
    priority             INTEGER NOT NULL DEFAULT 0,
    input                BLOB    NOT NULL,
    output               BLOB,
    error                BLOB,
    webhook              TEXT,
    s3_config            BLOB,
    execution_timeout_ms INTEGER NOT NULL,
    ttl_ms               INTEGER NOT NULL,
    low_priority         INTEGER NOT NULL DEFAULT 0,
    retention_ms         INTEGER NOT NULL,
    owner                TEXT,
    worker_id            TEXT,
    attempts             INTEGER NOT NULL DEFAULT 0,
    max_attempts         INTEGER NOT NULL,
    created_at           REAL    NOT NULL,
    expires_at           REAL    NOT NULL,
    started_at           REAL,
    finished_at          REAL,
    lease_expires_at     REAL,
    deadline_at          REAL,
    purge_at             REAL,
    stop_pod             INTEGER NOT NULL DEFAULT 0,
    stream_seq           INTEGER NOT NULL DEFAULT 0,
    webhook_state        TEXT,
    webhook_attempts     INTEGER NOT NULL DEFAULT 0,
    webhook_next_at      REAL
);
-- claims: O(log n) in queue depth, priority first, then age
CREATE INDEX jobs_queue ON jobs (endpoint, priority DESC, seq) WHERE status = 'IN_QUEUE';
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE status = 'IN_PROGRESS';
CREATE INDEX jobs_deadline ON jobs (deadline_at) WHERE status = 'IN_PROGRESS';
CREATE INDEX jobs_expiry ON jobs (expires_at) WHERE status IN ('IN_QUEUE', 'IN_PROGRESS');
CREATE INDEX jobs_purge ON jobs (purge_at) WHERE purge_at IS NOT NULL;
CREATE INDEX jobs_webhook ON jobs (webhook_next_at) WHERE webhook_state = 'pending';
CREATE INDEX jobs_endpoint_status ON jobs (endpoint, status);

CREATE TABLE stream_chunks (
    job_id TEXT    NOT NULL,
    n      INTEGER NOT NULL,
    output BLOB    NOT NULL,
    PRIMARY KEY (job_id, n)
) WITHOUT ROWID;

CREATE TABLE workers (
    id         TEXT PRIMARY KEY,
    endpoint   TEXT NOT NULL,
    last_seen  REAL NOT NULL,
    job_ids    TEXT NOT NULL DEFAULT '',
    gpu        TEXT,
    version    TEXT,
    unhealthy  TEXT
);

CREATE TABLE worker_tokens (
    token_hash TEXT PRIMARY KEY,
    endpoint   TEXT NOT NULL,
    created_at REAL NOT NULL
);
