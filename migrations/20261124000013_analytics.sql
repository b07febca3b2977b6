-- Analytics (issue 9, ADR 0021): the `analytics` schema that Metabase reads. Written only by
-- the analytics_sink stage, from every fact on the bus (the FACTS stream mirrors LEADS and
-- CALLS). Fact tables are append-only and keyed by what they describe (an event, an attempt,
-- an appointment): a replayed fact inserts nothing, and a rollup is bumped only in the
-- transaction that inserted its fact, so rollups always equal a recount of the facts.
-- Every table starts with tenant_id; row-level security lets the application write one
-- tenant at a time and lets each analytics reader see the tenants `analytics.readers` grants.

CREATE SCHEMA analytics;

-- Who may read what: a role mapped to one tenant, or to every tenant (tenant_id NULL).
-- The shared Metabase role `caller_metabase` is mapped to every tenant by `caller metabase
-- provision`; a client's own BI login is mapped to its tenant (docs/analytics.md).
CREATE TABLE analytics.readers (
    role_name  text        NOT NULL,
    tenant_id  uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (role_name, tenant_id)
);

-- True when the current role reads `tenant` through `analytics.readers`. SECURITY DEFINER:
-- readers cannot read the mapping itself, only ask about their own role.
CREATE FUNCTION analytics.readable(tenant uuid) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, analytics AS $$
    SELECT EXISTS (
        SELECT 1 FROM analytics.readers
        WHERE role_name = session_user::text AND (tenant_id IS NULL OR tenant_id = tenant))
$$;

-- The tenants as analysts see them, copied from `clients` when the sink first meets one
-- (later renames are not copied; the slug never changes). `timezone` is the business's zone,
-- in which the rollups' days, weeks and months are counted.
CREATE TABLE analytics.tenants (
    tenant_id   uuid        PRIMARY KEY,
    slug        text        NOT NULL,
    name        text        NOT NULL,
    timezone    text        NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now()
);

-- The business's calendar day, ISO week (its Monday) and month of `at`, in which a tenant's
-- rollups count it (UTC for a tenant the sink has not met).
CREATE FUNCTION analytics.local_day(tenant uuid, at timestamptz) RETURNS date
    LANGUAGE sql STABLE AS $$
    SELECT (at AT TIME ZONE coalesce(
        (SELECT timezone FROM analytics.tenants WHERE tenant_id = tenant), 'UTC'))::date
$$;
CREATE FUNCTION analytics.local_week(tenant uuid, at timestamptz) RETURNS date
    LANGUAGE sql STABLE AS $$
    SELECT date_trunc('week', analytics.local_day(tenant, at))::date
$$;
CREATE FUNCTION analytics.local_month(tenant uuid, at timestamptz) RETURNS date
    LANGUAGE sql STABLE AS $$
    SELECT date_trunc('month', analytics.local_day(tenant, at))::date
$$;

-- Every fact with its envelope: the raw record rollups are recounted from, and what the
-- stage latencies are measured on.
CREATE TABLE analytics.event_facts (
    tenant_id     uuid        NOT NULL,
    event_id      uuid        PRIMARY KEY,
    event_type    text        NOT NULL,
    version       integer     NOT NULL,
    source        text        NOT NULL,
    call_id       uuid,
    causation_id  uuid,
    occurred_at   timestamptz NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_facts_cause ON analytics.event_facts (causation_id) WHERE causation_id IS NOT NULL;
CREATE INDEX event_facts_call ON analytics.event_facts (call_id, event_type) WHERE call_id IS NOT NULL;
CREATE INDEX event_facts_tenant_type ON analytics.event_facts (tenant_id, event_type, occurred_at);

-- How long a stage took to turn one fact into the next: the time from the causing event to
-- the event the stage emitted (`stage` is the emitter's stage name).
CREATE TABLE analytics.stage_latency_facts (
    tenant_id    uuid             NOT NULL,
    event_id     uuid             PRIMARY KEY,
    stage        text             NOT NULL,
    event_type   text             NOT NULL,
    cause_type   text             NOT NULL,
    occurred_at  timestamptz      NOT NULL,
    latency_ms   double precision NOT NULL
);
CREATE INDEX stage_latency_facts_stage ON analytics.stage_latency_facts (stage, occurred_at);

-- A lead reaching its tenant (lead.resolved): a new lead, or a scheduled attempt fired by the
-- scheduler (`kind` retry, follow_up or callback).
CREATE TABLE analytics.lead_facts (
    tenant_id    uuid        NOT NULL,
    event_id     uuid        PRIMARY KEY,
    kind         text        NOT NULL CHECK (kind IN ('new', 'retry', 'follow_up', 'callback')),
    source       text        NOT NULL,
    campaign     text,
    timezone     text        NOT NULL,
    received_at  timestamptz NOT NULL,
    resolved_at  timestamptz NOT NULL
);
CREATE INDEX lead_facts_tenant ON analytics.lead_facts (tenant_id, resolved_at);

-- An admitted call attempt (call.requested), with the lead's source for attribution.
CREATE TABLE analytics.call_request_facts (
    tenant_id       uuid        NOT NULL,
    call_id         uuid        NOT NULL,
    attempt_number  integer     NOT NULL,
    event_id        uuid        NOT NULL UNIQUE,
    lead_source     text        NOT NULL,
    campaign        text,
    requested_at    timestamptz NOT NULL,
    PRIMARY KEY (call_id, attempt_number)
);
CREATE INDEX call_request_facts_tenant ON analytics.call_request_facts (tenant_id, requested_at);

-- How one call attempt ended (call.outcome); the first outcome of an attempt is its fact.
CREATE TABLE analytics.call_facts (
    tenant_id       uuid        NOT NULL,
    attempt_id      uuid        PRIMARY KEY,
    call_id         uuid        NOT NULL,
    attempt_number  integer     NOT NULL,
    event_id        uuid        NOT NULL UNIQUE,
    outcome         text        NOT NULL,
    answered_by     text,
    duration_secs   integer,
    ended_at        timestamptz NOT NULL
);
CREATE INDEX call_facts_tenant ON analytics.call_facts (tenant_id, ended_at);
CREATE INDEX call_facts_call ON analytics.call_facts (call_id, attempt_number);

-- A conversation with the agent (conversation.ended).
CREATE TABLE analytics.conversation_facts (
    tenant_id      uuid        NOT NULL,
    attempt_id     uuid        PRIMARY KEY,
    call_id        uuid        NOT NULL,
    event_id       uuid        NOT NULL UNIQUE,
    end_reason     text        NOT NULL,
    started_at     timestamptz NOT NULL,
    ended_at       timestamptz NOT NULL,
    duration_secs  integer     NOT NULL,
    turns          integer     NOT NULL,
    tool_calls     integer     NOT NULL,
    resumes        integer     NOT NULL
);
CREATE INDEX conversation_facts_tenant ON analytics.conversation_facts (tenant_id, ended_at);

-- A conversation's summary (conversation.summarized): outcome and sentiment.
CREATE TABLE analytics.summary_facts (
    tenant_id          uuid        NOT NULL,
    attempt_id         uuid        PRIMARY KEY,
    call_id            uuid        NOT NULL,
    event_id           uuid        NOT NULL UNIQUE,
    outcome            text        NOT NULL,
    sentiment          text        NOT NULL,
    sentiment_score    real        NOT NULL,
    source             text        NOT NULL,
    provider_analysis  boolean     NOT NULL,
    call_successful    text,
    summarized_at      timestamptz NOT NULL
);
CREATE INDEX summary_facts_tenant ON analytics.summary_facts (tenant_id, summarized_at);

-- An appointment booked during a conversation, seen when the conversation ended, valued at
-- the tenant's `appointment_value` at that time (NULL when none is configured).
CREATE TABLE analytics.booking_facts (
    tenant_id       uuid        NOT NULL,
    appointment_id  uuid        PRIMARY KEY,
    call_id         uuid        NOT NULL,
    attempt_id      uuid        NOT NULL,
    event_id        uuid        NOT NULL,
    calendar        text        NOT NULL,
    lead_source     text        NOT NULL,
    starts_at       timestamptz NOT NULL,
    booked_at       timestamptz NOT NULL,
    value_cents     bigint,
    currency        text
);
CREATE INDEX booking_facts_tenant ON analytics.booking_facts (tenant_id, booked_at);

-- Rollups, bumped in the transaction that inserted the fact. Days, weeks (starting Monday)
-- and months are the business's, in analytics.tenants.timezone.
CREATE TABLE analytics.daily_call_summary (
    tenant_id      uuid    NOT NULL,
    day            date    NOT NULL,
    leads          integer NOT NULL DEFAULT 0,
    attempts       integer NOT NULL DEFAULT 0,
    human          integer NOT NULL DEFAULT 0,
    machine        integer NOT NULL DEFAULT 0,
    no_answer      integer NOT NULL DEFAULT 0,
    busy           integer NOT NULL DEFAULT 0,
    failed         integer NOT NULL DEFAULT 0,
    cancelled      integer NOT NULL DEFAULT 0,
    unknown        integer NOT NULL DEFAULT 0,
    call_secs      bigint  NOT NULL DEFAULT 0,
    conversations  integer NOT NULL DEFAULT 0,
    talk_secs      bigint  NOT NULL DEFAULT 0,
    bookings       integer NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day)
);

CREATE TABLE analytics.weekly_performance_summary (
    tenant_id      uuid    NOT NULL,
    week           date    NOT NULL,
    leads          integer NOT NULL DEFAULT 0,
    attempts       integer NOT NULL DEFAULT 0,
    human          integer NOT NULL DEFAULT 0,
    conversations  integer NOT NULL DEFAULT 0,
    talk_secs      bigint  NOT NULL DEFAULT 0,
    bookings       integer NOT NULL DEFAULT 0,
    positive       integer NOT NULL DEFAULT 0,
    neutral        integer NOT NULL DEFAULT 0,
    negative       integer NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, week)
);

CREATE TABLE analytics.monthly_revenue_attribution (
    tenant_id    uuid    NOT NULL,
    month        date    NOT NULL,
    lead_source  text    NOT NULL,
    currency     text    NOT NULL,
    bookings     integer NOT NULL DEFAULT 0,
    value_cents  bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, month, lead_source, currency)
);

CREATE TABLE analytics.ai_performance_trends (
    tenant_id         uuid             NOT NULL,
    day               date             NOT NULL,
    conversations     integer          NOT NULL DEFAULT 0,
    turns             integer          NOT NULL DEFAULT 0,
    tool_calls        integer          NOT NULL DEFAULT 0,
    resumes           integer          NOT NULL DEFAULT 0,
    summaries         integer          NOT NULL DEFAULT 0,
    booked            integer          NOT NULL DEFAULT 0,
    positive          integer          NOT NULL DEFAULT 0,
    neutral           integer          NOT NULL DEFAULT 0,
    negative          integer          NOT NULL DEFAULT 0,
    sentiment_sum     double precision NOT NULL DEFAULT 0,
    provider_success  integer          NOT NULL DEFAULT 0,
    provider_failure  integer          NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day)
);

-- Periodic snapshots of each durable consumer (written by the analytics_sink's companion;
-- platform-wide, so tenant_id is the nil uuid) and of each tenant's admission queue.
CREATE TABLE analytics.consumer_snapshots (
    tenant_id        uuid        NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
    taken_at         timestamptz NOT NULL,
    stream           text        NOT NULL,
    consumer         text        NOT NULL,
    pending          bigint      NOT NULL,
    ack_pending      bigint      NOT NULL,
    redelivered      bigint      NOT NULL,
    waiting          bigint      NOT NULL,
    delivered_seq    bigint      NOT NULL,
    PRIMARY KEY (stream, consumer, taken_at)
);

CREATE TABLE analytics.admission_snapshots (
    tenant_id  uuid        NOT NULL,
    taken_at   timestamptz NOT NULL,
    waiting    integer     NOT NULL,
    admitted   integer     NOT NULL,
    PRIMARY KEY (tenant_id, taken_at)
);

-- Views (security_invoker: the reader's row-level security applies through them).

-- Attempts admitted and not yet ended, in the last day, with how far they got.
CREATE VIEW analytics.active_calls_view WITH (security_invoker = true) AS
SELECT r.tenant_id, t.slug AS tenant, r.call_id, r.attempt_number, r.lead_source,
       r.requested_at,
       CASE
           WHEN EXISTS (SELECT 1 FROM analytics.event_facts e
                        WHERE e.call_id = r.call_id AND e.event_type = 'call.answered'
                          AND e.occurred_at >= r.requested_at) THEN 'talking'
           WHEN EXISTS (SELECT 1 FROM analytics.event_facts e
                        WHERE e.call_id = r.call_id AND e.event_type = 'call.status_reported'
                          AND e.occurred_at >= r.requested_at) THEN 'ringing'
           ELSE 'dialing'
       END AS phase,
       now() - r.requested_at AS age
FROM analytics.call_request_facts r
LEFT JOIN analytics.tenants t USING (tenant_id)
WHERE r.requested_at > now() - interval '1 day'
  AND NOT EXISTS (SELECT 1 FROM analytics.call_facts c
                  WHERE c.call_id = r.call_id AND c.attempt_number = r.attempt_number);

-- The latest snapshot of every consumer: messages waiting, in flight and redelivered.
CREATE VIEW analytics.queue_status_view WITH (security_invoker = true) AS
SELECT DISTINCT ON (stream, consumer)
       stream, consumer, taken_at, pending, ack_pending, redelivered, waiting, delivered_seq,
       now() - taken_at AS snapshot_age
FROM analytics.consumer_snapshots
ORDER BY stream, consumer, taken_at DESC;

-- Each tenant's last 24 hours and 7 days at a glance, with a health verdict.
CREATE VIEW analytics.client_health_dashboard WITH (security_invoker = true) AS
WITH calls AS (
    SELECT tenant_id,
           count(*) FILTER (WHERE ended_at > now() - interval '24 hours') AS attempts_24h,
           count(*) FILTER (WHERE ended_at > now() - interval '24 hours' AND outcome = 'human') AS answered_24h,
           count(*) FILTER (WHERE ended_at > now() - interval '24 hours' AND outcome IN ('failed', 'unknown')) AS failed_24h,
           count(*) FILTER (WHERE ended_at > now() - interval '7 days') AS attempts_7d,
           max(ended_at) AS last_call_at
    FROM analytics.call_facts GROUP BY tenant_id
), bookings AS (
    SELECT tenant_id, count(*) AS bookings_7d
    FROM analytics.booking_facts WHERE booked_at > now() - interval '7 days' GROUP BY tenant_id
), sentiment AS (
    SELECT tenant_id, avg(sentiment_score)::double precision AS sentiment_7d
    FROM analytics.summary_facts WHERE summarized_at > now() - interval '7 days' GROUP BY tenant_id
), queue AS (
    SELECT DISTINCT ON (tenant_id) tenant_id, waiting AS queued_now
    FROM analytics.admission_snapshots ORDER BY tenant_id, taken_at DESC
)
SELECT t.tenant_id, t.slug AS tenant, t.name,
       coalesce(c.attempts_24h, 0) AS attempts_24h,
       coalesce(c.answered_24h, 0) AS answered_24h,
       round(coalesce(c.answered_24h, 0)::numeric / nullif(c.attempts_24h, 0), 3) AS answer_rate_24h,
       coalesce(c.failed_24h, 0) AS failed_24h,
       coalesce(b.bookings_7d, 0) AS bookings_7d,
       round(coalesce(b.bookings_7d, 0)::numeric / nullif(c.attempts_7d, 0), 3) AS booking_rate_7d,
       s.sentiment_7d,
       coalesce(q.queued_now, 0) AS queued_now,
       c.last_call_at,
       CASE
           WHEN coalesce(c.attempts_7d, 0) = 0 THEN 'idle'
           WHEN c.attempts_24h >= 10 AND c.failed_24h::numeric / c.attempts_24h > 0.2 THEN 'failing'
           WHEN c.attempts_24h >= 10 AND c.answered_24h = 0 THEN 'degraded'
           ELSE 'healthy'
       END AS health
FROM analytics.tenants t
LEFT JOIN calls c USING (tenant_id)
LEFT JOIN bookings b USING (tenant_id)
LEFT JOIN sentiment s USING (tenant_id)
LEFT JOIN queue q USING (tenant_id);

-- The time between consecutive facts of one call, whoever emitted them: the phases a call
-- goes through (call.requested → first status: dial and the provider; call.answered →
-- conversation.ended: the conversation), including the links no causation id records
-- (telephony callbacks, the media gateway, converse's workers).
CREATE VIEW analytics.call_phase_latency WITH (security_invoker = true) AS
SELECT tenant_id, call_id, event_id, previous_type, event_type, source, occurred_at, latency_ms
FROM (
    SELECT tenant_id, call_id, event_id, event_type, source, occurred_at,
           lag(event_type) OVER w AS previous_type,
           extract(epoch FROM (occurred_at - lag(occurred_at) OVER w)) * 1000 AS latency_ms
    FROM analytics.event_facts
    WHERE call_id IS NOT NULL
    WINDOW w AS (PARTITION BY call_id ORDER BY occurred_at, event_id)
) phases
WHERE previous_type IS NOT NULL;

-- Stage latency percentiles per hour, for the per-stage latency dashboard.
CREATE VIEW analytics.stage_latency_hourly WITH (security_invoker = true) AS
SELECT tenant_id, stage, date_trunc('hour', occurred_at) AS hour, count(*) AS events,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99_ms
FROM analytics.stage_latency_facts
GROUP BY tenant_id, stage, date_trunc('hour', occurred_at);

-- The read-only analytics role: Metabase (and any BI login) is a member of it. NOLOGIN here;
-- the login roles that use it are made by the operator (docs/analytics.md).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'caller_analytics_reader') THEN
        CREATE ROLE caller_analytics_reader NOLOGIN;
    END IF;
END
$$;

-- Row-level security on every table. The application (and the owner) writes and reads the
-- tenant of its transaction, or every tenant as the platform. Readers get their own policy,
-- without the app settings: a reader could SET app.platform itself, so it must not count.
DO $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY[
        'tenants', 'event_facts', 'stage_latency_facts', 'lead_facts', 'call_request_facts',
        'call_facts', 'conversation_facts', 'summary_facts', 'booking_facts',
        'daily_call_summary', 'weekly_performance_summary', 'monthly_revenue_attribution',
        'ai_performance_trends', 'consumer_snapshots', 'admission_snapshots'] LOOP
        EXECUTE format('ALTER TABLE analytics.%I ENABLE ROW LEVEL SECURITY', tbl);
        EXECUTE format('ALTER TABLE analytics.%I FORCE ROW LEVEL SECURITY', tbl);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON analytics.%I TO caller_app, CURRENT_USER
                 USING (app_is_platform() OR tenant_id = app_tenant_id())
                 WITH CHECK (app_is_platform() OR tenant_id = app_tenant_id())',
            tbl);
        EXECUTE format(
            'CREATE POLICY readers ON analytics.%I FOR SELECT TO caller_analytics_reader
                 USING (analytics.readable(tenant_id))',
            tbl);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE ON analytics.%I TO caller_app', tbl);
    END LOOP;
END
$$;
GRANT DELETE ON analytics.consumer_snapshots, analytics.admission_snapshots TO caller_app;
-- Queue snapshots are platform-wide (nil tenant): every reader may see them.
CREATE POLICY readers_see_queues ON analytics.consumer_snapshots FOR SELECT
    TO caller_analytics_reader USING (true);

GRANT USAGE ON SCHEMA analytics TO caller_app;
GRANT SELECT ON analytics.active_calls_view, analytics.queue_status_view,
    analytics.client_health_dashboard, analytics.stage_latency_hourly,
    analytics.call_phase_latency TO caller_app;
GRANT EXECUTE ON FUNCTION analytics.readable(uuid), analytics.local_day(uuid, timestamptz),
    analytics.local_week(uuid, timestamptz), analytics.local_month(uuid, timestamptz)
    TO caller_app;

GRANT USAGE ON SCHEMA analytics TO caller_analytics_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO caller_analytics_reader;
REVOKE SELECT ON analytics.readers FROM caller_analytics_reader;
GRANT EXECUTE ON FUNCTION analytics.readable(uuid), analytics.local_day(uuid, timestamptz),
    analytics.local_week(uuid, timestamptz), analytics.local_month(uuid, timestamptz)
    TO caller_analytics_reader;
