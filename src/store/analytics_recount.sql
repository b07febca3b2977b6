-- Every rollup recounted from the facts, compared with what the sink stored: one row per
-- rollup row that differs (stored and recounted side by side). No rows: every rollup is exact.
WITH daily AS (
    SELECT tenant_id, day, sum(leads)::int AS leads, sum(attempts)::int AS attempts,
           sum(human)::int AS human, sum(machine)::int AS machine,
           sum(no_answer)::int AS no_answer, sum(busy)::int AS busy, sum(failed)::int AS failed,
           sum(cancelled)::int AS cancelled, sum(unknown)::int AS unknown,
           sum(call_secs)::bigint AS call_secs, sum(conversations)::int AS conversations,
           sum(talk_secs)::bigint AS talk_secs, sum(bookings)::int AS bookings
    FROM (
        SELECT tenant_id, analytics.local_day(tenant_id, resolved_at) AS day, 1 AS leads,
               0 AS attempts, 0 AS human, 0 AS machine, 0 AS no_answer, 0 AS busy, 0 AS failed,
               0 AS cancelled, 0 AS unknown, 0 AS call_secs, 0 AS conversations, 0 AS talk_secs,
               0 AS bookings
        FROM analytics.lead_facts WHERE kind = 'new'
        UNION ALL
        SELECT tenant_id, analytics.local_day(tenant_id, ended_at), 0, 1,
               (outcome = 'human')::int, (outcome = 'machine')::int,
               (outcome = 'no_answer')::int, (outcome = 'busy')::int, (outcome = 'failed')::int,
               (outcome = 'cancelled')::int,
               (outcome NOT IN ('human', 'machine', 'no_answer', 'busy', 'failed', 'cancelled'))::int,
               coalesce(duration_secs, 0), 0, 0, 0
        FROM analytics.call_facts
        UNION ALL
        SELECT tenant_id, analytics.local_day(tenant_id, ended_at), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
               1, duration_secs, 0
        FROM analytics.conversation_facts
        UNION ALL
        SELECT tenant_id, analytics.local_day(tenant_id, booked_at), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
               0, 0, 1
        FROM analytics.booking_facts
    ) parts
    GROUP BY tenant_id, day
), weekly AS (
    SELECT tenant_id, week, sum(leads)::int AS leads, sum(attempts)::int AS attempts,
           sum(human)::int AS human, sum(conversations)::int AS conversations,
           sum(talk_secs)::bigint AS talk_secs, sum(bookings)::int AS bookings,
           sum(positive)::int AS positive, sum(neutral)::int AS neutral,
           sum(negative)::int AS negative
    FROM (
        SELECT tenant_id, analytics.local_week(tenant_id, resolved_at) AS week, 1 AS leads,
               0 AS attempts, 0 AS human, 0 AS conversations, 0 AS talk_secs, 0 AS bookings,
               0 AS positive, 0 AS neutral, 0 AS negative
        FROM analytics.lead_facts WHERE kind = 'new'
        UNION ALL
        SELECT tenant_id, analytics.local_week(tenant_id, ended_at), 0, 1,
               (outcome = 'human')::int, 0, 0, 0, 0, 0, 0
        FROM analytics.call_facts
        UNION ALL
        SELECT tenant_id, analytics.local_week(tenant_id, ended_at), 0, 0, 0, 1, duration_secs,
               0, 0, 0, 0
        FROM analytics.conversation_facts
        UNION ALL
        SELECT tenant_id, analytics.local_week(tenant_id, booked_at), 0, 0, 0, 0, 0, 1, 0, 0, 0
        FROM analytics.booking_facts
        UNION ALL
        SELECT tenant_id, analytics.local_week(tenant_id, summarized_at), 0, 0, 0, 0, 0, 0,
               (sentiment = 'positive')::int,
               (sentiment NOT IN ('positive', 'negative'))::int,
               (sentiment = 'negative')::int
        FROM analytics.summary_facts
    ) parts
    GROUP BY tenant_id, week
), monthly AS (
    SELECT tenant_id, analytics.local_month(tenant_id, booked_at) AS month, lead_source,
           coalesce(currency, 'none') AS currency, count(*)::int AS bookings,
           coalesce(sum(value_cents), 0)::bigint AS value_cents
    FROM analytics.booking_facts
    GROUP BY 1, 2, 3, 4
), ai AS (
    SELECT tenant_id, day, sum(conversations)::int AS conversations, sum(turns)::int AS turns,
           sum(tool_calls)::int AS tool_calls, sum(resumes)::int AS resumes,
           sum(summaries)::int AS summaries, sum(booked)::int AS booked,
           sum(positive)::int AS positive, sum(neutral)::int AS neutral,
           sum(negative)::int AS negative, sum(sentiment_sum)::double precision AS sentiment_sum,
           sum(provider_success)::int AS provider_success,
           sum(provider_failure)::int AS provider_failure
    FROM (
        SELECT tenant_id, analytics.local_day(tenant_id, ended_at) AS day, 1 AS conversations,
               turns, tool_calls, resumes, 0 AS summaries, 0 AS booked, 0 AS positive,
               0 AS neutral, 0 AS negative, 0::double precision AS sentiment_sum,
               0 AS provider_success, 0 AS provider_failure
        FROM analytics.conversation_facts
        UNION ALL
        SELECT tenant_id, analytics.local_day(tenant_id, summarized_at), 0, 0, 0, 0, 1,
               (outcome = 'booked')::int, (sentiment = 'positive')::int,
               (sentiment NOT IN ('positive', 'negative'))::int, (sentiment = 'negative')::int,
               sentiment_score::double precision,
               (call_successful = 'success')::int, (call_successful = 'failure')::int
        FROM analytics.summary_facts
    ) parts
    GROUP BY tenant_id, day
), diffs AS (
    SELECT 'daily_call_summary' AS rollup, to_jsonb(s) AS stored, to_jsonb(r) AS recounted
    FROM analytics.daily_call_summary s FULL JOIN daily r USING (tenant_id, day)
    WHERE (s.leads, s.attempts, s.human, s.machine, s.no_answer, s.busy, s.failed,
               s.cancelled, s.unknown, s.call_secs, s.conversations, s.talk_secs, s.bookings)
              IS DISTINCT FROM
              (r.leads, r.attempts, r.human, r.machine, r.no_answer, r.busy, r.failed,
               r.cancelled, r.unknown, r.call_secs, r.conversations, r.talk_secs, r.bookings)
    UNION ALL
    SELECT 'weekly_performance_summary', to_jsonb(s), to_jsonb(r)
    FROM analytics.weekly_performance_summary s FULL JOIN weekly r USING (tenant_id, week)
    WHERE (s.leads, s.attempts, s.human, s.conversations, s.talk_secs, s.bookings, s.positive,
           s.neutral, s.negative)
          IS DISTINCT FROM
          (r.leads, r.attempts, r.human, r.conversations, r.talk_secs, r.bookings, r.positive,
           r.neutral, r.negative)
    UNION ALL
    SELECT 'monthly_revenue_attribution', to_jsonb(s), to_jsonb(r)
    FROM analytics.monthly_revenue_attribution s
    FULL JOIN monthly r USING (tenant_id, month, lead_source, currency)
    WHERE (s.bookings, s.value_cents) IS DISTINCT FROM (r.bookings, r.value_cents)
    UNION ALL
    SELECT 'ai_performance_trends', to_jsonb(s), to_jsonb(r)
    FROM analytics.ai_performance_trends s FULL JOIN ai r USING (tenant_id, day)
    WHERE (s.conversations, s.turns, s.tool_calls, s.resumes, s.summaries, s.booked,
           s.positive, s.neutral, s.negative, s.provider_success, s.provider_failure)
          IS DISTINCT FROM
          (r.conversations, r.turns, r.tool_calls, r.resumes, r.summaries, r.booked,
           r.positive, r.neutral, r.negative, r.provider_success, r.provider_failure)
       OR abs(s.sentiment_sum - r.sentiment_sum) > 1e-3
)
SELECT rollup, stored::text, recounted::text FROM diffs
