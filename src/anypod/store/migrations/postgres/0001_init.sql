-- anypod schema v1 (PostgreSQL). Times are epoch seconds (double precision, like SQLite's REAL,
-- so the floats the domain passes in come back bit-identical). input/output/error/stream chunks
-- are the encoded JSON bytes exactly as the domain hands them over (bytea: no parse, no
-- re-encoding, no key reordering); see docs/postgres.md.
CREATE TABLE jobs (
    seq                  bigint           GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                   text             NOT NULL UNIQUE,
    endpoint             text             NOT NULL,
    status               text             NOT NULL,
    priority             integer          NOT NULL DEFAULT 0,
    input                bytea            NOT NULL,
    output               bytea,
    error                bytea,
    webhook              text,
    s3_config            bytea,
    execution_timeout_ms bigint           NOT NULL,
    ttl_ms               bigint           NOT NULL,
    low_priority         boolean          NOT NULL DEFAULT false,
    retention_ms         bigint           NOT NULL,
    owner                text,
    worker_id            text,
    attempts             integer          NOT NULL DEFAULT 0,
    max_attempts         integer          NOT NULL,
    created_at           double precision NOT NULL,
    expires_at           double precision NOT NULL,
    started_at           double precision,
    finished_at          double precision,
    lease_expires_at     double precision,
    deadline_at          double precision,
    purge_at             double precision,
    stop_pod             boolean          NOT NULL DEFAULT false,
    stream_seq           integer          NOT NULL DEFAULT 0,
    webhook_state        text,
    webhook_attempts     integer          NOT NULL DEFAULT 0,
    webhook_next_at      double precision
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
    job_id text    NOT NULL,
    n      integer NOT NULL,
    output bytea   NOT NULL,
    PRIMARY KEY (job_id, n)
);

CREATE TABLE workers (
    id        text             PRIMARY KEY,
    endpoint  text             NOT NULL,
    last_seen double precision NOT NULL,
    job_ids   text[]           NOT NULL DEFAULT '{}',
    gpu       text,
    version   text,
    unhealthy text
);

CREATE TABLE worker_tokens (
    token_hash text             PRIMARY KEY,
    endpoint   text             NOT NULL,
    created_at double precision NOT NULL
);
