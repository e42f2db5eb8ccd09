-- anypod schema v3. jobs.retries counts a client's /retry of the job, which starts its attempts
-- anew: /health's "retried" counts jobs run more than once either way.
ALTER TABLE jobs ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;
