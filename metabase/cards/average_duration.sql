-- Average durations per tenant: of a connected call (person or machine, as the carrier
-- reported it) and of a conversation with the agent. Read from the facts, not the daily
-- rollup: the rollup's call_secs also holds unanswered attempts' ringing time.
WITH calls AS (
    SELECT tenant_id,
           avg(duration_secs) FILTER (WHERE outcome IN ('human', 'machine')) AS call_secs
    FROM analytics.call_facts
    GROUP BY tenant_id
), conversations AS (
    SELECT tenant_id, avg(duration_secs) AS talk_secs
    FROM analytics.conversation_facts
    GROUP BY tenant_id
)
SELECT t.slug AS tenant,
       round(c.call_secs, 1) AS avg_connected_call_secs,
       round(v.talk_secs, 1) AS avg_conversation_secs
FROM analytics.tenants t
LEFT JOIN calls c USING (tenant_id)
LEFT JOIN conversations v USING (tenant_id)
WHERE true [[AND t.slug = {{tenant}}]]
ORDER BY t.slug
