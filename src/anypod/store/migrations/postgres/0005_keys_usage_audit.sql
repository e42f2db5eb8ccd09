-- anypod schema v5 (PostgreSQL): managed API keys (hashed), worker tokens with ids, per-key usage by
-- day, the append-only audit log, shared rate-limit buckets, and an index for a key's
-- unfinished jobs (its concurrency cap).
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    name        TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    endpoints   TEXT,
    limits      TEXT NOT NULL DEFAULT '{}',
    created_at  double precision NOT NULL,
    expires_at  double precision,
    revoked_at  double precision,
    rotated_at  double precision
);
CREATE INDEX api_keys_tenant ON api_keys (tenant);

ALTER TABLE worker_tokens ADD COLUMN id TEXT;
ALTER TABLE worker_tokens ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE worker_tokens ADD COLUMN revoked_at double precision;
UPDATE worker_tokens SET id = substr(token_hash, 1, 12) WHERE id IS NULL;
CREATE UNIQUE INDEX worker_tokens_id ON worker_tokens (id);

CREATE TABLE key_usage (
    day          TEXT    NOT NULL,
    key_id       TEXT    NOT NULL,
    endpoint     TEXT    NOT NULL,
    tenant       TEXT    NOT NULL,
    submitted    INTEGER NOT NULL DEFAULT 0,
    completed    INTEGER NOT NULL DEFAULT 0,
    failed       INTEGER NOT NULL DEFAULT 0,
    cancelled    INTEGER NOT NULL DEFAULT 0,
    timed_out    INTEGER NOT NULL DEFAULT 0,
    execution_ms bigint  NOT NULL DEFAULT 0,
    bytes_in     bigint  NOT NULL DEFAULT 0,
    bytes_out    bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (day, key_id, endpoint)
);
CREATE INDEX key_usage_tenant ON key_usage (tenant, day);

CREATE TABLE audit_log (
    seq    bigserial PRIMARY KEY,
    at     double precision NOT NULL,
    actor  TEXT,
    tenant TEXT,
    action TEXT NOT NULL,
    target TEXT,
    source TEXT,
    detail TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE FUNCTION anypod_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION anypod_audit_append_only();

CREATE TABLE rate_buckets (
    key_id  TEXT PRIMARY KEY,
    tokens  double precision NOT NULL,
    at      double precision NOT NULL,
    granted double precision NOT NULL DEFAULT 0
);

-- jobs charged against each quota period of a key (one row per key, meter and period)
CREATE TABLE quota_counters (
    key_id  TEXT NOT NULL,
    period  TEXT NOT NULL,
    used    double precision NOT NULL,
    PRIMARY KEY (key_id, period)
);

CREATE INDEX jobs_owner_open ON jobs (owner) WHERE status IN ('IN_QUEUE', 'IN_PROGRESS');
