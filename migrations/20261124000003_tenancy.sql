-- Client businesses (tenants) and their configuration. The tenancy issue adds sealed
-- credential handling, API keys and row-level security on top of these tables.

CREATE TABLE clients (
    id           uuid        PRIMARY KEY,
    slug         text        NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
    name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status       text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    -- IANA zone of the business, e.g. America/New_York.
    timezone     text        NOT NULL DEFAULT 'UTC',
    billing      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
SELECT manage_updated_at('clients');

-- One row per client: which providers it uses and their non-secret settings.
CREATE TABLE client_configurations (
    tenant_id          uuid        PRIMARY KEY REFERENCES clients (id) ON DELETE CASCADE,
    crm_provider       text        CHECK (crm_provider IN ('gohighlevel', 'zoho', 'custom')),
    telephony_provider text        CHECK (telephony_provider IN ('twilio', 'fonoster')),
    voice_provider     text        CHECK (voice_provider IN ('elevenlabs', 'local')),
    calendar_provider  text        CHECK (calendar_provider IN
                                   ('crm', 'caldav', 'static', 'google', 'outlook', 'calendly', 'acuity')),
    -- Business hours, calling windows, caps, retry policy, agent settings (validated in Rust).
    settings           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- Optimistic concurrency for the management API.
    revision           integer     NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
SELECT manage_updated_at('client_configurations');

-- Provider credentials, sealed with AES-256-GCM; plaintext never reaches this table.
CREATE TABLE client_credentials (
    id          uuid        PRIMARY KEY,
    tenant_id   uuid        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    -- e.g. 'twilio.auth_token', 'gohighlevel.oauth'; bound into the AEAD additional data.
    kind        text        NOT NULL,
    key_id      text        NOT NULL,
    nonce       bytea       NOT NULL CHECK (length(nonce) = 12),
    ciphertext  bytea       NOT NULL,
    -- Last characters of the plaintext, for masked display only.
    hint        text,
    expires_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, kind)
);
SELECT manage_updated_at('client_credentials');
CREATE INDEX client_credentials_key_id ON client_credentials (key_id);

-- Feature flags and A/B variants per client.
CREATE TABLE client_features (
    tenant_id   uuid        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    flag        text        NOT NULL,
    enabled     boolean     NOT NULL DEFAULT false,
    -- Variant weights or parameters for experiments.
    variants    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, flag)
);
SELECT manage_updated_at('client_features');
