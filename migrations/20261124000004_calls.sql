-- Calls and their attempts. States follow ARCHITECTURE.md section 5; transitions are
-- compare-and-set updates recorded in call_state_transitions, so late callbacks never move a
-- call backwards.

CREATE TABLE calls (
    id                uuid        PRIMARY KEY,
    tenant_id         uuid        NOT NULL REFERENCES clients (id),
    direction         text        NOT NULL CHECK (direction IN ('outbound', 'inbound')),
    state             text        NOT NULL DEFAULT 'queued' CHECK (state IN (
                          'queued', 'initiated', 'ringing', 'connected', 'completed', 'failed',
                          'no_answer', 'busy', 'retry_scheduled', 'dropped', 'recovering',
                          'resumed', 'cancelled')),
    -- E.164 numbers.
    to_number         text        NOT NULL CHECK (to_number ~ '^\+[1-9][0-9]{6,14}$'),
    from_number       text        CHECK (from_number ~ '^\+[1-9][0-9]{6,14}$'),
    -- The lead as the CRM knows it.
    crm_contact_id    text,
    lead              jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- The event that requested the call; one call per requesting event.
    request_event_id  uuid        NOT NULL,
    outcome           text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, request_event_id)
);
SELECT manage_updated_at('calls');
CREATE INDEX calls_tenant_state ON calls (tenant_id, state);

-- One row per dial. The dial protocol records intent (state 'dialing', keyed by the input
-- event) before calling the provider, then stores the provider's call id.
CREATE TABLE call_attempts (
    id                uuid        PRIMARY KEY,
    call_id           uuid        NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    tenant_id         uuid        NOT NULL REFERENCES clients (id),
    attempt_number    integer     NOT NULL CHECK (attempt_number >= 1),
    state             text        NOT NULL DEFAULT 'dialing' CHECK (state IN (
                          'dialing', 'initiated', 'ringing', 'answered', 'completed', 'failed',
                          'no_answer', 'busy', 'voicemail', 'cancelled', 'unknown')),
    input_event_id    uuid        NOT NULL,
    provider          text        NOT NULL,
    provider_call_id  text,
    from_number       text,
    started_at        timestamptz,
    answered_at       timestamptz,
    ended_at          timestamptz,
    duration_seconds  integer,
    failure_reason    text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (call_id, attempt_number),
    UNIQUE (tenant_id, input_event_id)
);
SELECT manage_updated_at('call_attempts');
CREATE UNIQUE INDEX call_attempts_provider_call ON call_attempts (provider, provider_call_id)
    WHERE provider_call_id IS NOT NULL;

-- Append-only log of every accepted state change.
CREATE TABLE call_state_transitions (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        uuid        NOT NULL,
    call_id          uuid        NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    attempt_id       uuid        REFERENCES call_attempts (id) ON DELETE CASCADE,
    from_state       text        NOT NULL,
    to_state         text        NOT NULL,
    cause_event_id   uuid,
    occurred_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX call_state_transitions_call ON call_state_transitions (call_id, occurred_at);
