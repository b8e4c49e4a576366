-- Tenants' secrets (what ${secret:NAME} in a workflow resolves to) and executions' login
-- sessions (the cookies a workflow's login ended with, read by every worker of the
-- execution).
--
-- Values are stored as backends/secret_cipher.py seals them: "v1:<base64>" (AES-256-GCM
-- under TRAWL_SECRETS_KEY) or, without a key, "plain:<value>". Listing secrets reads names
-- and times only.
CREATE TABLE secrets (
    tenant     text COLLATE "C" NOT NULL,
    name       text COLLATE "C" NOT NULL,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, name)
);

-- One row per execution: its latest login. A re-login writes the next generation; a row is
-- only ever replaced by a later generation, so of two workers logging in at once the first
-- write wins and the other reads it.
CREATE TABLE login_sessions (
    execution_id text COLLATE "C" PRIMARY KEY,
    generation   integer NOT NULL,
    body         text NOT NULL,  -- the LoginSession as JSON, sealed like a secret's value
    created_at   timestamptz NOT NULL
);
