-- The backlog the autoscaler and the dashboards read (TaskLedger.backlog, read every few
-- seconds by one orchestrator: orchestrator/metrics.py). Expand only: two indexes.
--
-- tasks_queued holds exactly the queued tasks (registered, released, unfinished), so the
-- count and the oldest registration of an execution's queued tasks cost what it has queued
-- (its queue window bounds that), not what it has finished. The price on the write path: a
-- finish takes its row out of this index, so it is no longer a HOT update (the primary
-- key gets a new entry per finished task). Finishing 200,000 rows in batches of 500, five runs each on a
-- busy 2-core machine: median 3.2 s without it, 3.4 s with it, both within the run-to-run
-- spread (2.5 to 5.1 s). Building it holds writes to tasks for as long as the build takes:
-- 0.2 s per million rows here.
CREATE INDEX tasks_queued ON tasks (execution_id, registered_at)
    WHERE outcome IS NULL AND NOT held;

-- The running executions, without reading the others (the backlog, the sweep).
CREATE INDEX executions_running ON executions (id) WHERE status = 'running';
