-- The StateStore's schema: workflows and their versions, executions, tasks and their
-- counters, failures, outputs.
--
-- Names, ids and paths are COLLATE "C": they sort by code point, as the memory adapter and
-- every client sorts them, and compare faster than under a linguistic collation.
-- Executions carry no foreign keys to workflows (deleting a workflow keeps its executions),
-- and task rows none to executions (the port counts tasks of any execution id).

-- One row per workflow name: the last version handed out. It survives deletes, so a version
-- number is never reused, and locking it serializes concurrent puts of one workflow.
CREATE TABLE workflow_names (
    tenant       text COLLATE "C" NOT NULL,
    name         text COLLATE "C" NOT NULL,
    last_version integer NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE workflow_versions (
    tenant      text COLLATE "C" NOT NULL,
    name        text COLLATE "C" NOT NULL,
    version     integer NOT NULL CHECK (version > 0),
    source_text text NOT NULL,
    spec_json   text NOT NULL,  -- text, not jsonb: handed back exactly as it was put
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant, name, version)
);

CREATE TABLE executions (
    id               text COLLATE "C" PRIMARY KEY,
    tenant           text COLLATE "C" NOT NULL,
    workflow         text COLLATE "C" NOT NULL,
    workflow_version integer NOT NULL,
    status           text NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'cancelled', 'failed')),
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    params           jsonb NOT NULL DEFAULT '{}',
    error            text
);

CREATE INDEX executions_newest ON executions (tenant, created_at DESC, id DESC);
CREATE INDEX executions_newest_by_workflow
    ON executions (tenant, workflow, created_at DESC, id DESC);

-- One row per execution, locked first by every operation that writes tasks: that
-- serializes them per execution (so max_total holds and nothing deadlocks) and keeps the
-- totals progress() reads. Updated on every batch, so fillfactor leaves room for HOT updates.
CREATE TABLE task_counters (
    execution_id text COLLATE "C" PRIMARY KEY,
    published    bigint NOT NULL DEFAULT 0,
    finished     bigint NOT NULL DEFAULT 0,
    records      bigint NOT NULL DEFAULT 0
) WITH (fillfactor = 50);

-- Finished-task counts by dimension: outcome, phase x outcome, marker x outcome ('' for no
-- marker), failure_class, warning. A few dozen rows per execution, read by progress().
CREATE TABLE task_counts (
    execution_id text COLLATE "C" NOT NULL,
    dimension    text COLLATE "C" NOT NULL
        CHECK (dimension IN ('outcome', 'phase', 'marker', 'failure_class', 'warning')),
    name         text COLLATE "C" NOT NULL,
    outcome      text COLLATE "C" NOT NULL DEFAULT '',
    count        bigint NOT NULL,
    PRIMARY KEY (execution_id, dimension, name, outcome)
) WITH (fillfactor = 50);

-- One row per registered task. Keys are URLs and may exceed what a btree entry can hold, so
-- the index is on their SHA-256. outcome NULL: registered, not finished yet.
CREATE TABLE tasks (
    execution_id text COLLATE "C" NOT NULL,
    key_hash     bytea NOT NULL,
    key          text NOT NULL,
    outcome      text CHECK (outcome IN ('succeeded', 'failed', 'filtered')),
    PRIMARY KEY (execution_id, key_hash)
) WITH (fillfactor = 90);

-- The dead letters: tasks that failed for good. id orders them (newest first) even when
-- two share a timestamp.
CREATE TABLE failures (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    execution_id text COLLATE "C" NOT NULL,
    key          text NOT NULL,
    url          text NOT NULL,
    phase        text NOT NULL,
    error_class  text NOT NULL,
    message      text NOT NULL,
    attempt      integer NOT NULL,
    at           timestamptz NOT NULL
);

CREATE INDEX failures_newest ON failures (execution_id, id DESC);

CREATE TABLE outputs (
    execution_id text COLLATE "C" NOT NULL,
    path         text COLLATE "C" NOT NULL,
    size_bytes   bigint NOT NULL,
    records      bigint NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('part', 'export', 'summary')),
    PRIMARY KEY (execution_id, path)
);
