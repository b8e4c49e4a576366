-- Counters without a hot row per execution (docs/distributed.md, "Counters"): each writer
-- adds to one of a few shard rows of the execution (its process's, picked among
-- TRAWL_COUNTER_SHARDS), and readers sum the execution's task_counters row and its shards.
--
-- EXPAND only: three new tables, nothing rewritten, no lock on the existing tables beyond
-- what CREATE TABLE takes, so it runs while executions run and while workers of the
-- previous version still write task_counters, task_counts and warning_examples (which every
-- read keeps adding in). Folding those rows into the shards and dropping the old columns is
-- a later CONTRACT step, once no worker of the previous version is left.

-- Per execution and shard: the totals task_counters has, as deltas (a shard's queued or
-- published may be negative: a task registered through one shard can finish through
-- another), the newest finish and lease it saw, and frozen_at, which a freeze sets on every
-- shard row of the execution. Updated by every batch of its writers, so fillfactor leaves
-- room for HOT updates.
CREATE TABLE task_counter_shards (
    execution_id     text COLLATE "C" NOT NULL,
    shard            integer NOT NULL CHECK (shard >= 0 AND shard < 64),
    published        bigint NOT NULL DEFAULT 0,
    finished         bigint NOT NULL DEFAULT 0,
    records          bigint NOT NULL DEFAULT 0,
    queued           bigint NOT NULL DEFAULT 0,
    held             bigint NOT NULL DEFAULT 0,
    last_finished_at timestamptz,
    last_leased_at   timestamptz,
    frozen_at        timestamptz,
    PRIMARY KEY (execution_id, shard)
) WITH (fillfactor = 50);

-- task_counts by shard: finished tasks by dimension (outcome, phase, marker, failure_class,
-- warning, funnel), summed over the shards (and task_counts) on read.
CREATE TABLE task_count_shards (
    execution_id text COLLATE "C" NOT NULL,
    dimension    text COLLATE "C" NOT NULL
        CHECK (dimension IN ('outcome', 'phase', 'marker', 'failure_class', 'warning', 'funnel')),
    name         text COLLATE "C" NOT NULL,
    outcome      text COLLATE "C" NOT NULL DEFAULT '',
    shard        integer NOT NULL CHECK (shard >= 0 AND shard < 64),
    count        bigint NOT NULL,
    PRIMARY KEY (execution_id, dimension, name, outcome, shard)
) WITH (fillfactor = 50);

-- warning_examples by shard: counts summed on read, URLs merged (each once, a few).
CREATE TABLE warning_example_shards (
    execution_id text COLLATE "C" NOT NULL,
    kind         text COLLATE "C" NOT NULL,
    phase        text COLLATE "C" NOT NULL,
    field        text COLLATE "C" NOT NULL,
    shard        integer NOT NULL CHECK (shard >= 0 AND shard < 64),
    count        bigint NOT NULL,
    urls         text[] NOT NULL,
    PRIMARY KEY (execution_id, kind, phase, field, shard)
);
