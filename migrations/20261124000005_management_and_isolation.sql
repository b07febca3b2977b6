-- Management API keys, the audit log, and row-level isolation of every tenant-owned table.
--
-- The application connects as `caller_app`, which owns nothing: it is subject to the policies
-- below and sets its tenant per transaction (`app.tenant_id`), or platform mode
-- (`app.platform = on`) for operator work that spans tenants. FORCE makes the owner obey the
-- policies too. The API also scopes every query by the caller's tenant: RLS is the second
-- wall, not the only one.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'caller_app') THEN
        CREATE ROLE caller_app NOLOGIN;
    END IF;
END
$$;

CREATE FUNCTION app_tenant_id() RETURNS uuid
LANGUAGE sql STABLE AS $$ SELECT nullif(current_setting('app.tenant_id', true), '')::uuid $$;

CREATE FUNCTION app_is_platform() RETURNS boolean
LANGUAGE sql STABLE AS $$ SELECT coalesce(current_setting('app.platform', true), '') = 'on' $$;

-- API keys: `ck_live_` + 32 random bytes + checksum; only the SHA-256 of the whole key is kept.
CREATE TABLE api_keys (
    id                    uuid        PRIMARY KEY,
    -- NULL: an operator key (platform-wide); otherwise the one tenant it can act for.
    tenant_id             uuid        REFERENCES clients (id),
    name                  text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- The readable start of the key (`ck_live_` + 6 characters), for lists and logs.
    display_prefix        text        NOT NULL,
    key_hash              bytea       NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    scopes                text[]      NOT NULL,
    rate_limit_per_minute integer     NOT NULL DEFAULT 600 CHECK (rate_limit_per_minute > 0),
    created_at            timestamptz NOT NULL DEFAULT now(),
    -- Set when the key is rotated: it keeps working until then (the overlap).
    expires_at            timestamptz,
    revoked_at            timestamptz,
    last_used_at          timestamptz,
    replaced_by           uuid        REFERENCES api_keys (id)
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- Every management change. Append-only: the application role may insert and read, never
-- update or delete, and a trigger refuses updates and deletes from anyone.
CREATE TABLE audit_log (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- NULL: a platform-level action (operator keys).
    tenant_id      uuid,
    -- `key:<api key id>` or `operator:<name>` (CLI).
    actor          text        NOT NULL,
    action         text        NOT NULL,
    target         text        NOT NULL,
    -- SHA-256 of the canonical JSON of the target before and after; secrets are never part
    -- of that JSON (credentials contribute their key id and a digest of the ciphertext).
    before_digest  text,
    after_digest   text,
    request_id     text,
    occurred_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_tenant_time ON audit_log (tenant_id, occurred_at);

CREATE FUNCTION refuse_audit_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION refuse_audit_change();

-- Isolation: one policy per tenant-owned table.
ALTER TABLE clients ENABLE ROW LEVEL SECURITY;
ALTER TABLE clients FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON clients
    USING (app_is_platform() OR id = app_tenant_id())
    WITH CHECK (app_is_platform() OR id = app_tenant_id());

DO $$
DECLARE
    owned text;
BEGIN
    FOREACH owned IN ARRAY ARRAY[
        'client_configurations', 'client_credentials', 'client_features', 'calls',
        'call_attempts', 'call_state_transitions', 'processed_events', 'api_keys', 'audit_log'
    ] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', owned);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', owned);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I
                 USING (app_is_platform() OR tenant_id = app_tenant_id())
                 WITH CHECK (app_is_platform() OR tenant_id = app_tenant_id())',
            owned
        );
    END LOOP;
END
$$;

-- The application role's rights. New tables grant explicitly in their own migration.
GRANT USAGE ON SCHEMA public TO caller_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    clients, client_configurations, client_credentials, client_features, calls, call_attempts,
    call_state_transitions, processed_events, api_keys
    TO caller_app;
GRANT SELECT, INSERT ON audit_log TO caller_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO caller_app;
-- Readiness checks that every migration is applied.
GRANT SELECT ON _sqlx_migrations TO caller_app;
