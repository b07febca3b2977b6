-- Per-stage latency: from the causing event to the event the stage emitted, p50 and p99 over
-- the last 7 days. Computed from the facts: percentiles of hourly buckets cannot be combined.
SELECT s.stage, count(*) AS events,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY s.latency_ms)::numeric, 1) AS p50_ms,
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY s.latency_ms)::numeric, 1) AS p99_ms,
       round(max(s.latency_ms)::numeric, 1) AS max_ms
FROM analytics.stage_latency_facts s
JOIN analytics.tenants t USING (tenant_id)
WHERE s.occurred_at > now() - interval '7 days' [[AND t.slug = {{tenant}}]]
GROUP BY s.stage
ORDER BY s.stage
