-- Admission and dialing (ADR 0016, ADR 0017): the durable waiting room of resolved leads,
-- the shared pacing rows, and what the dial and call_status stages record on attempts.

-- Leads waiting to be admitted as calls: in their calling window later (`not_before`), or
-- over their tenant's concurrency cap now. The scheduler drives the same table for retries.
-- A row is `waiting` until an admission cycle admits it (creating the `calls` row in the same
-- transaction); it is then `admitted` until its `call.requested` is published, and deleted.
CREATE TABLE admission_queue (
    tenant_id        uuid        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    -- The lead.resolved event (or the scheduler's request) this row came from.
    lead_event_id    uuid        NOT NULL,
    -- The call this lead becomes; derived from lead_event_id, so replays agree.
    call_id          uuid        NOT NULL,
    -- The resolved lead (events::lead_flow::LeadResolved as JSON).
    lead             jsonb       NOT NULL,
    to_number        text        NOT NULL CHECK (to_number ~ '^\+[1-9][0-9]{6,14}$'),
    timezone         text        NOT NULL,
    state            text        NOT NULL DEFAULT 'waiting'
                                 CHECK (state IN ('waiting', 'admitted')),
    -- Earliest admission: now, or the start of the next calling window.
    not_before       timestamptz NOT NULL,
    -- Why not_before is in the future (`calling_window`, `business_hours`), for operators.
    deferred_reason  text,
    enqueued_at      timestamptz NOT NULL DEFAULT now(),
    admitted_at      timestamptz,
    -- The pacing slot the dial stage waits for, and the caller id chosen at admission.
    dial_not_before  timestamptz,
    from_number      text        CHECK (from_number ~ '^\+[1-9][0-9]{6,14}$'),
    PRIMARY KEY (tenant_id, lead_event_id),
    UNIQUE (tenant_id, call_id)
);
-- Ready leads of one tenant, oldest first.
CREATE INDEX admission_queue_ready ON admission_queue (tenant_id, not_before, enqueued_at)
    WHERE state = 'waiting';
-- Admitted rows whose publication a crash interrupted.
CREATE INDEX admission_queue_unpublished ON admission_queue (admitted_at)
    WHERE state = 'admitted';

-- Pacing (GCRA): one row per tenant (`key` = 'tenant') and one per caller number (`key` =
-- 'from:+1…'). `tat` is the theoretical arrival time: the next call may start at
-- greatest(tat, now()), and starting one moves tat one interval past that. The tenant row is
-- also the lock an admission cycle takes for the tenant (FOR UPDATE SKIP LOCKED).
CREATE TABLE admission_limits (
    tenant_id   uuid        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    key         text        NOT NULL CHECK (key = 'tenant' OR key ~ '^from:\+[1-9][0-9]{6,14}$'),
    tat         timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);

-- Calls in progress, counted by every admission cycle.
CREATE INDEX calls_live ON calls (tenant_id)
    WHERE state IN ('queued', 'initiated', 'ringing', 'connected', 'dropped', 'recovering', 'resumed');

-- What the attempt learned from the provider.
ALTER TABLE call_attempts
    ADD COLUMN answered_by  text,
    ADD COLUMN failure_code integer,
    -- When the dial stage last asked the provider (reconciliation waits for callbacks first).
    ADD COLUMN dialed_at    timestamptz;

-- The transitions log holds both machines: the call's and the attempt's.
ALTER TABLE call_state_transitions
    ADD COLUMN machine text NOT NULL DEFAULT 'call' CHECK (machine IN ('call', 'attempt'));

DO $$
DECLARE
    owned text;
BEGIN
    FOREACH owned IN ARRAY ARRAY['admission_queue', 'admission_limits'] LOOP
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

GRANT SELECT, INSERT, UPDATE, DELETE ON admission_queue, admission_limits TO caller_app;
