-- The webhook outbox: the call each ended execution owes to the URL its workflow or its
-- start named (worker/webhooks.py), one row per execution, kept once delivered or failed.
--
-- A claim is the row itself: claiming bumps `attempts` and moves `next_at` a lease ahead,
-- so no other worker takes the row meanwhile. Only pending rows are in the partial index
-- the claim walks, earliest due first.
CREATE TABLE webhooks (
    execution_id text COLLATE "C" PRIMARY KEY,
    tenant       text COLLATE "C" NOT NULL,
    url          text NOT NULL,
    payload      text NOT NULL,  -- the JSON body, exactly as it is signed and sent
    status       text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts     integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL,
    next_at      timestamptz NOT NULL,
    last_error   text,
    finished_at  timestamptz
);

CREATE INDEX webhooks_due ON webhooks (next_at, execution_id) WHERE status = 'pending';
