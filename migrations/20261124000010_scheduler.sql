-- The scheduler (ADR 0020): retries, follow-up campaigns and their cancellation.

-- Multi-stage follow-up campaigns of a tenant. `stages` is a JSON array of
-- scheduling::campaign::CampaignStage (day offset, time of day in the lead's zone, optional
-- agent variant and message); `triggers` a JSON array of scheduling::campaign::Trigger
-- (inbound CRM events that enroll a lead). A paused campaign's jobs wait in `paused`.
CREATE TABLE follow_up_campaigns (
    tenant_id     uuid        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    id            uuid        NOT NULL,
    name          text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    stages        jsonb       NOT NULL,
    triggers      jsonb       NOT NULL DEFAULT '[]',
    state         text        NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

-- Retry policies of calling campaigns (the `campaign_id` a lead names), overriding the
-- tenant's `configuration.retry_policy`. `policy` is a tenancy::config::RetryPolicy.
CREATE TABLE retry_schedules (
    tenant_id     uuid        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    campaign_id   text        NOT NULL CHECK (length(campaign_id) BETWEEN 1 AND 200),
    policy        jsonb       NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, campaign_id)
);

-- Every planned attempt: a retry of a call, or a stage of a follow-up campaign. The id is
-- derived from what scheduled it, so a replayed decision inserts nothing twice. A scheduler
-- claims `pending` rows whose `due_at` has come (FOR UPDATE SKIP LOCKED), publishes each as a
-- lead.resolved whose event id is derived from the job, and marks it `fired` in the same
-- transaction.
CREATE TABLE scheduled_jobs (
    id                uuid        PRIMARY KEY,
    tenant_id         uuid        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    kind              text        NOT NULL CHECK (kind IN ('retry', 'follow_up')),
    state             text        NOT NULL DEFAULT 'pending'
                                  CHECK (state IN ('pending', 'paused', 'fired', 'cancelled')),
    to_number         text        NOT NULL CHECK (to_number ~ '^\+[1-9][0-9]{6,14}$'),
    crm_contact_id    text,
    -- retry: the call dialed again (with attempt_number); follow-up: the call it became.
    call_id           uuid,
    attempt_number    integer     NOT NULL DEFAULT 1 CHECK (attempt_number >= 1),
    -- follow-up: the campaign and the stage (index into its stages).
    campaign_id       uuid,
    stage_index       integer     CHECK (stage_index >= 0),
    -- When the job may fire (inside the lead's windows), and the earliest instant its ladder
    -- step or stage asked for before windows moved it.
    due_at            timestamptz NOT NULL,
    earliest_at       timestamptz NOT NULL,
    -- Why it exists: `no_answer`, `busy`, `voicemail`, `technical: …`, `escalated`, `trigger: …`.
    reason            text        NOT NULL CHECK (length(reason) <= 500),
    timezone          text        NOT NULL,
    -- The lead's zone was not known: the tenant's was used (documented fallback order).
    timezone_fallback boolean     NOT NULL DEFAULT false,
    -- The lead as resolved (events::lead_flow::LeadResolved), published when due.
    lead              jsonb       NOT NULL,
    -- The event whose handling scheduled it (a call.outcome, a lead.resolved).
    source_event_id   uuid        NOT NULL,
    fired_at          timestamptz,
    cancelled_at      timestamptz,
    cancel_reason     text        CHECK (length(cancel_reason) <= 500),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
    -- No foreign key on campaign_id: deleting a campaign cancels its open jobs and keeps the
    -- history of the fired and cancelled ones.
);
-- Due jobs, earliest first: the claim query.
CREATE INDEX scheduled_jobs_due ON scheduled_jobs (due_at) WHERE state = 'pending';
-- A lead's open jobs: cancellation and listing.
CREATE INDEX scheduled_jobs_lead ON scheduled_jobs (tenant_id, to_number, due_at);
CREATE INDEX scheduled_jobs_contact ON scheduled_jobs (tenant_id, crm_contact_id)
    WHERE crm_contact_id IS NOT NULL;
CREATE INDEX scheduled_jobs_campaign ON scheduled_jobs (tenant_id, campaign_id, due_at)
    WHERE campaign_id IS NOT NULL;
CREATE INDEX scheduled_jobs_call ON scheduled_jobs (call_id) WHERE call_id IS NOT NULL;

-- A queued lead may be a retry: the attempt it becomes.
ALTER TABLE admission_queue
    ADD COLUMN attempt_number integer NOT NULL DEFAULT 1 CHECK (attempt_number >= 1);

DO $$
DECLARE
    owned text;
BEGIN
    FOREACH owned IN ARRAY ARRAY['follow_up_campaigns', 'retry_schedules', 'scheduled_jobs'] LOOP
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

GRANT SELECT, INSERT, UPDATE, DELETE ON follow_up_campaigns, retry_schedules, scheduled_jobs
    TO caller_app;
