-- What the reconciler, the stall check and a cancel need.
--
-- tasks: the encoded task (to publish a lost one again), when it was registered or last
-- re-published, and until when a worker holds it (a lease its sweep renews). None of these
-- is indexed: finishing a task stays a HOT update, and only a stalled execution's rows are
-- ever scanned for them.
ALTER TABLE tasks
    ADD COLUMN task text,
    ADD COLUMN registered_at timestamptz,
    ADD COLUMN leased_until timestamptz;

-- task_counters: when a task last finished and was last leased, and when the counters of an
-- ended execution were frozen (nothing is added or finished after that).
ALTER TABLE task_counters
    ADD COLUMN last_finished_at timestamptz,
    ADD COLUMN last_leased_at timestamptz,
    ADD COLUMN frozen_at timestamptz;

-- Named claims with an expiry: which worker's turn it is at a sweep.
CREATE TABLE claims (
    name       text COLLATE "C" PRIMARY KEY,
    owner      text NOT NULL,
    claimed_at timestamptz NOT NULL,
    until      timestamptz NOT NULL
);

CREATE INDEX executions_cancelled ON executions (id) WHERE status = 'cancelled';
