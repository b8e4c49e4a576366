-- API keys of the orchestrator: only a SHA-256 of each key is kept, and the tenant it
-- belongs to. Active executions per tenant are counted for the API's cap.
CREATE TABLE api_keys (
    key_hash   text COLLATE "C" PRIMARY KEY,
    tenant     text COLLATE "C" NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE INDEX executions_active ON executions (tenant) WHERE status IN ('pending', 'running');
