-- The queue window of an execution (fair sharing of the workers between executions): a
-- task registered beyond the window is held, not published, until finishes make room.
--
-- tasks.held: registered and waiting for room (never in the queue). Only held rows are in
-- the partial index, which release walks oldest first; finishing a task does not touch
-- `held`, so it stays a HOT update.
-- task_counters.queued: released tasks not finished yet; task_counters.held: held ones.
-- Executions running while this is applied start at queued = 0: finishes floor it at zero,
-- so at worst their window admits a few more tasks once.
ALTER TABLE tasks ADD COLUMN held boolean NOT NULL DEFAULT false;

CREATE INDEX tasks_held ON tasks (execution_id, registered_at, key_hash) WHERE held;

ALTER TABLE task_counters
    ADD COLUMN queued bigint NOT NULL DEFAULT 0,
    ADD COLUMN held bigint NOT NULL DEFAULT 0;
