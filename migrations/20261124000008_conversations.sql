-- Conversations (issue 6): sessions owned through a lease, transcript turns, agent tool
-- calls, sealed recordings, and the bookings and lead changes agent tools make.

-- One conversation per answered attempt. The converse stage inserts it from call.answered;
-- a worker owns it while `lease_until` is in the future and renews it by heartbeat. `epoch`
-- goes up with every take-over and fences the previous owner's writes.
CREATE TABLE conversations (
    attempt_id              uuid        PRIMARY KEY REFERENCES call_attempts (id) ON DELETE CASCADE,
    call_id                 uuid        NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    tenant_id               uuid        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    state                   text        NOT NULL DEFAULT 'waiting'
                                        CHECK (state IN ('waiting', 'active', 'ended')),
    owner                   text,
    lease_until             timestamptz,
    epoch                   integer     NOT NULL DEFAULT 0,
    resumes                 integer     NOT NULL DEFAULT 0,
    answered_event_id       uuid        NOT NULL,
    provider_call_id        text        NOT NULL,
    stream_id               text        NOT NULL,
    -- What the engine is started with (agent, variables, overrides), fixed at open so a
    -- resumed session speaks with the same context.
    context                 jsonb       NOT NULL,
    engine                  text        NOT NULL DEFAULT 'elevenlabs',
    engine_conversation_ids text[]      NOT NULL DEFAULT '{}',
    started_at              timestamptz NOT NULL DEFAULT now(),
    ended_at                timestamptz,
    end_reason              text,
    -- Set once conversation.ended is confirmed by the stream; rows ended without it are
    -- republished by any worker.
    ended_published_at      timestamptz,
    -- The voice provider's post-call report, merged by the post_call stage.
    provider_transcript     jsonb,
    provider_analysis       jsonb,
    provider_metadata       jsonb,
    provider_reported_at    timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
SELECT manage_updated_at('conversations');
CREATE INDEX conversations_open ON conversations (lease_until) WHERE state <> 'ended';
CREATE INDEX conversations_unpublished ON conversations (ended_at)
    WHERE state = 'ended' AND ended_published_at IS NULL;
CREATE INDEX conversations_call ON conversations (call_id);
CREATE INDEX conversations_engine_ids ON conversations USING gin (engine_conversation_ids);

-- Transcript turns, stored one by one as the engine reports them.
CREATE TABLE conversation_turns (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    uuid        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    attempt_id   uuid        NOT NULL REFERENCES conversations (attempt_id) ON DELETE CASCADE,
    seq          integer     NOT NULL CHECK (seq >= 1),
    role         text        NOT NULL CHECK (role IN ('agent', 'user')),
    text         text        NOT NULL,
    -- The session epoch that heard it (a resumed conversation has turns of several).
    epoch        integer     NOT NULL,
    spoken_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (attempt_id, seq)
);

-- Every agent tool call, with its result and latency.
CREATE TABLE tool_invocations (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     uuid        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    attempt_id    uuid        NOT NULL REFERENCES conversations (attempt_id) ON DELETE CASCADE,
    tool_call_id  text        NOT NULL,
    name          text        NOT NULL,
    parameters    jsonb       NOT NULL,
    result        text        NOT NULL,
    is_error      boolean     NOT NULL,
    latency_ms    integer     NOT NULL CHECK (latency_ms >= 0),
    epoch         integer     NOT NULL,
    started_at    timestamptz NOT NULL,
    UNIQUE (attempt_id, tool_call_id)
);

-- Sealed recordings (recording::sealed): both channels as a stereo WAV, AES-256-GCM STREAM.
CREATE TABLE call_recordings (
    attempt_id     uuid        PRIMARY KEY REFERENCES call_attempts (id) ON DELETE CASCADE,
    call_id        uuid        NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    tenant_id      uuid        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    storage        text        NOT NULL DEFAULT 'local' CHECK (storage IN ('local')),
    -- Relative to the recordings directory (recording.dir).
    location       text        NOT NULL,
    key_id         text        NOT NULL,
    format         text        NOT NULL DEFAULT 'wav-aes256gcm-stream-v1',
    state          text        NOT NULL DEFAULT 'recording'
                               CHECK (state IN ('recording', 'complete', 'truncated')),
    duration_secs  double precision,
    started_at     timestamptz NOT NULL DEFAULT now(),
    completed_at   timestamptz
);

-- Appointments booked by the agent against a static schedule (calendar = static); CRM and
-- calendar providers keep theirs at the provider.
CREATE TABLE appointments (
    id          uuid        PRIMARY KEY,
    tenant_id   uuid        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    call_id     uuid        REFERENCES calls (id) ON DELETE SET NULL,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL CHECK (ends_at > starts_at),
    name        text,
    phone       text,
    notes       text,
    status      text        NOT NULL DEFAULT 'booked' CHECK (status IN ('booked', 'cancelled')),
    -- The tool call that booked it: a retried tool call finds its booking.
    booked_by   text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, booked_by)
);
CREATE UNIQUE INDEX appointments_slot ON appointments (tenant_id, starts_at) WHERE status = 'booked';

-- Changes the agent made to a lead (status, notes, tags, custom fields), waiting for CRM sync.
CREATE TABLE lead_updates (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       uuid        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    call_id         uuid        NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    crm_contact_id  text,
    changes         jsonb       NOT NULL,
    state           text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'synced', 'failed')),
    requested_by    text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, requested_by)
);

DO $$
DECLARE
    owned text;
BEGIN
    FOREACH owned IN ARRAY ARRAY['conversations', 'conversation_turns', 'tool_invocations',
                                 'call_recordings', 'appointments', 'lead_updates'] LOOP
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

GRANT SELECT, INSERT, UPDATE, DELETE ON conversations, conversation_turns, tool_invocations,
    call_recordings, appointments, lead_updates TO caller_app;
