-- anypod schema v4 (PostgreSQL). A worker is known by its endpoint and its id: a worker token of
-- one endpoint can no longer take over (or be blocked by) a worker of another endpoint that
-- uses the same id. The table only holds the last ping of each worker: emptied, re-keyed.
DELETE FROM workers;
ALTER TABLE workers DROP CONSTRAINT workers_pkey;
ALTER TABLE workers ADD PRIMARY KEY (endpoint, id);
