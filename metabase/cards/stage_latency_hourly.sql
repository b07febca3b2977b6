-- Per-stage latency per hour and tenant over the last 2 days (the stage_latency_hourly view).
SELECT h.hour, h.stage, t.slug AS tenant, h.events,
       round(h.p50_ms::numeric, 1) AS p50_ms, round(h.p99_ms::numeric, 1) AS p99_ms
FROM analytics.stage_latency_hourly h
JOIN analytics.tenants t USING (tenant_id)
WHERE h.hour > now() - interval '2 days' [[AND t.slug = {{tenant}}]]
ORDER BY h.hour, h.stage, t.slug
