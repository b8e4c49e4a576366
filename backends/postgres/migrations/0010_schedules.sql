-- Schedules (docs/schedules.md): a tenant's standing order to start executions of a
-- workflow at the times a cron expression names in a time zone, and the newest fires of
-- each, with what came of them.
--
-- Schedulers (one per orchestrator instance) claim due rows with FOR UPDATE SKIP LOCKED,
-- bumping `claim` and holding the row until `claimed_until`; only the holder of the last
-- claim records the outcome. Only enabled rows are in the partial index the claim walks,
-- earliest due first.
CREATE TABLE schedules (
    id                text COLLATE "C" PRIMARY KEY,
    tenant            text COLLATE "C" NOT NULL,
    workflow          text COLLATE "C" NOT NULL,
    workflow_version  integer,           -- NULL: the latest version at each fire
    cron              text NOT NULL,
    timezone          text NOT NULL,
    overrides         text[] NOT NULL DEFAULT '{}',
    webhook           text,
    enabled           boolean NOT NULL DEFAULT true,
    overlap           text NOT NULL CHECK (overlap IN ('skip', 'allow')),
    missed            text NOT NULL CHECK (missed IN ('skip', 'run_once')),
    next_run_at       timestamptz,       -- NULL while paused
    last_run_at       timestamptz,
    last_outcome      text,
    last_execution_id text COLLATE "C",
    started           integer NOT NULL DEFAULT 0,
    skipped_overlap   integer NOT NULL DEFAULT 0,
    missed_fires      integer NOT NULL DEFAULT 0,
    failed_to_start   integer NOT NULL DEFAULT 0,
    revision          integer NOT NULL DEFAULT 1,
    claim             integer NOT NULL DEFAULT 0,
    claimed_until     timestamptz,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);

CREATE INDEX schedules_tenant ON schedules (tenant, created_at, id);
CREATE INDEX schedules_due ON schedules (next_run_at, id) WHERE enabled;

CREATE TABLE schedule_fires (
    id            bigserial PRIMARY KEY,
    schedule_id   text COLLATE "C" NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    scheduled_for timestamptz NOT NULL,
    at            timestamptz NOT NULL,
    outcome       text NOT NULL
        CHECK (outcome IN ('started', 'skipped_overlap', 'missed', 'failed_to_start')),
    execution_id  text COLLATE "C",
    reason        text,
    count         integer NOT NULL DEFAULT 1
);

CREATE INDEX schedule_fires_by_schedule ON schedule_fires (schedule_id, id);
