-- The crawl funnel (discovered, in scope, new, fetched, extracted) per target phase and
-- marker is one more dimension of task_counts: name "phase|marker", outcome the stage.
ALTER TABLE task_counts DROP CONSTRAINT task_counts_dimension_check;
ALTER TABLE task_counts ADD CONSTRAINT task_counts_dimension_check
    CHECK (dimension IN ('outcome', 'phase', 'marker', 'failure_class', 'warning', 'funnel'));
