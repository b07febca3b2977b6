-- Ingress: the long-horizon lead dedupe record, API idempotency keys, and the do-not-call
-- and opt-out lists that resolve_tenant checks.

-- One row per (tenant, scope, dedupe key): the dedupe stage's memory beyond the stream's
-- duplicate window. `scope` is empty for leads whose tenant ingress knew; for a lead that
-- arrived under the platform tenant (a HighLevel app event of a location not yet mapped) it
-- is the tenant key, e.g. `gohighlevel_location:ve9EPM428h8vShlRW1KT`.
CREATE TABLE lead_dedupe (
    tenant_id      uuid        NOT NULL,
    scope          text        NOT NULL DEFAULT '',
    dedupe_key     text        NOT NULL CHECK (length(dedupe_key) BETWEEN 1 AND 300),
    -- The event that passed; a later copy passes again only after the horizon.
    event_id       uuid        NOT NULL,
    first_seen_at  timestamptz NOT NULL,
    last_seen_at   timestamptz NOT NULL,
    seen_count     integer     NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, scope, dedupe_key)
);
-- Sweeps delete records older than the horizon.
CREATE INDEX lead_dedupe_first_seen ON lead_dedupe (first_seen_at);

-- `Idempotency-Key` of `POST /v1/calls` (Stripe-like): the same key and body get the same
-- response; another body gets 422; a request still in flight gets 409.
CREATE TABLE idempotency_keys (
    tenant_id       uuid        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    key             text        NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    -- SHA-256 of the method, path and body.
    request_digest  text        NOT NULL,
    state           text        NOT NULL CHECK (state IN ('in_flight', 'completed')),
    -- Until when an in-flight request owns the key; a crashed request's key is taken over
    -- after it.
    locked_until    timestamptz NOT NULL,
    status_code     integer,
    response        jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- Numbers a tenant must not call: its do-not-call list and people who opted out.
CREATE TABLE call_blocklist (
    tenant_id   uuid        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    phone       text        NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    list        text        NOT NULL CHECK (list IN ('do_not_call', 'opt_out')),
    reason      text        CHECK (length(reason) <= 500),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, phone, list)
);

-- A HighLevel location or Zoho organization belongs to one tenant: resolve_tenant finds
-- tenants by them, and a second tenant claiming the same one would receive another's leads.
CREATE UNIQUE INDEX client_configurations_gohighlevel_location
    ON client_configurations ((settings #>> '{providers,gohighlevel,location_id}'))
    WHERE settings #>> '{providers,gohighlevel,location_id}' IS NOT NULL;
CREATE UNIQUE INDEX client_configurations_zoho_org
    ON client_configurations ((settings #>> '{providers,zoho,org_id}'))
    WHERE settings #>> '{providers,zoho,org_id}' IS NOT NULL;

DO $$
DECLARE
    owned text;
BEGIN
    FOREACH owned IN ARRAY ARRAY['lead_dedupe', 'idempotency_keys', 'call_blocklist'] LOOP
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

GRANT SELECT, INSERT, UPDATE, DELETE ON lead_dedupe, idempotency_keys, call_blocklist TO caller_app;
