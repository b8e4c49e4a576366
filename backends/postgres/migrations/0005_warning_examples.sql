-- Warnings by the field behind them: per execution, warning kind, phase and field, how many
-- and the first few page URLs (the store keeps at most MAX_WARNING_EXAMPLES), so a run's
-- summary can say which field of which phase would not convert, and where to look.
CREATE TABLE warning_examples (
    execution_id text COLLATE "C" NOT NULL,
    kind         text COLLATE "C" NOT NULL,
    phase        text COLLATE "C" NOT NULL,
    field        text COLLATE "C" NOT NULL,
    count        bigint NOT NULL,
    urls         text[] NOT NULL,
    PRIMARY KEY (execution_id, kind, phase, field)
);
