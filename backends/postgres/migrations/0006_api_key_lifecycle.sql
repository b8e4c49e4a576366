-- API keys get a public id (the first 12 hex digits of their hash: enough to name a key in
-- `trawl keys list` and to revoke it, never to use it), an admin flag (may manage keys
-- through the API), an optional expiry and a revocation time. Keys created before keep
-- working: not admin, no expiry.
ALTER TABLE api_keys
    ADD COLUMN id text COLLATE "C",
    ADD COLUMN admin boolean NOT NULL DEFAULT false,
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN revoked_at timestamptz;

UPDATE api_keys SET id = left(key_hash, 12);

ALTER TABLE api_keys ALTER COLUMN id SET NOT NULL;

CREATE UNIQUE INDEX api_keys_id ON api_keys (id);

CREATE INDEX api_keys_tenant ON api_keys (tenant, created_at);
