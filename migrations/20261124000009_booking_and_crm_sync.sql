-- CRM, slots and booking (issue 7): appointments become the booking ledger of every calendar,
-- with an exclusion constraint for the calendars we hold; crm_sync's write ledger; tenant
-- alerts.

-- btree_gist lets one exclusion constraint mix equality (tenant, calendar, seat) with range
-- overlap. It is a trusted extension: the database owner may create it.
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- Which calendar an appointment is in: `static` for schedules we hold, `<kind>:<id>` for
-- external ones. `held` is true when this table is the calendar itself (the exclusion
-- constraint then forbids overlaps); external rows are a ledger of what we booked there.
ALTER TABLE appointments
    ADD COLUMN calendar      text        NOT NULL DEFAULT 'static',
    ADD COLUMN held          boolean     NOT NULL DEFAULT true,
    -- With capacity n, a slot has seats 0..n-1; each seat takes one booking.
    ADD COLUMN seat          smallint    NOT NULL DEFAULT 0 CHECK (seat >= 0),
    -- The time the booking blocks: the slot plus the schedule's buffers.
    ADD COLUMN blocked_from  timestamptz,
    ADD COLUMN blocked_until timestamptz,
    -- Who it is for (contact, else phone, else e-mail): same lead and slot → same booking.
    ADD COLUMN lead_key      text,
    ADD COLUMN contact_id    text,
    ADD COLUMN email         text,
    -- The external calendar's id of it.
    ADD COLUMN external_id   text,
    ADD COLUMN updated_at    timestamptz NOT NULL DEFAULT now();
SELECT manage_updated_at('appointments');

UPDATE appointments SET blocked_from = starts_at, blocked_until = ends_at, lead_key = booked_by;
ALTER TABLE appointments
    ALTER COLUMN blocked_from SET NOT NULL,
    ALTER COLUMN blocked_until SET NOT NULL,
    ALTER COLUMN lead_key SET NOT NULL,
    ADD CONSTRAINT appointments_blocked_covers_slot
        CHECK (blocked_from <= starts_at AND blocked_until >= ends_at);

DROP INDEX appointments_slot;
ALTER TABLE appointments ADD CONSTRAINT appointments_no_overlap
    EXCLUDE USING gist (
        tenant_id WITH =,
        calendar WITH =,
        seat WITH =,
        tstzrange(blocked_from, blocked_until) WITH &&
    ) WHERE (status = 'booked' AND held);
CREATE UNIQUE INDEX appointments_same_lead_same_slot
    ON appointments (tenant_id, calendar, lead_key, starts_at) WHERE status = 'booked';
CREATE UNIQUE INDEX appointments_external
    ON appointments (tenant_id, calendar, external_id) WHERE external_id IS NOT NULL;

-- What crm_sync wrote: one row per (fact, action). An action is performed only when its row
-- is not `done`; `started` rows are looked up at the CRM before writing again (a note is
-- recognised by the marker in its body), so a replay never writes twice.
CREATE TABLE crm_writes (
    tenant_id   uuid        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    fact_key    text        NOT NULL,
    action      text        NOT NULL,
    state       text        NOT NULL DEFAULT 'started' CHECK (state IN ('started', 'done')),
    result      jsonb,
    attempts    integer     NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, fact_key, action)
);
SELECT manage_updated_at('crm_writes');

-- Problems a tenant must act on (reconnect a CRM, fix a mapping): one open alert per
-- (kind, provider), counted while it repeats, resolved when the provider works again.
CREATE TABLE tenant_alerts (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     uuid        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    kind          text        NOT NULL,
    provider      text        NOT NULL,
    message       text        NOT NULL,
    occurrences   integer     NOT NULL DEFAULT 1,
    first_at      timestamptz NOT NULL DEFAULT now(),
    last_at       timestamptz NOT NULL DEFAULT now(),
    resolved_at   timestamptz
);
CREATE UNIQUE INDEX tenant_alerts_open ON tenant_alerts (tenant_id, kind, provider)
    WHERE resolved_at IS NULL;

DO $$
DECLARE
    owned text;
BEGIN
    FOREACH owned IN ARRAY ARRAY['crm_writes', 'tenant_alerts'] LOOP
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

GRANT SELECT, INSERT, UPDATE, DELETE ON crm_writes, tenant_alerts TO caller_app;
