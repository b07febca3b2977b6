-- The phases of a call (time between consecutive facts of one call), over the last 7 days:
-- dialing, ringing, the conversation, wrapping up.
SELECT p.previous_type || ' → ' || p.event_type AS phase, count(*) AS calls,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY p.latency_ms)::numeric, 1) AS p50_ms,
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY p.latency_ms)::numeric, 1) AS p99_ms
FROM analytics.call_phase_latency p
JOIN analytics.tenants t USING (tenant_id)
WHERE p.occurred_at > now() - interval '7 days' [[AND t.slug = {{tenant}}]]
GROUP BY 1
ORDER BY 1
