-- Connection rate: the share of ended call attempts that connected at all (a person or an
-- answering machine picked up), per tenant (all time).
SELECT t.slug AS tenant,
       sum(d.attempts)::bigint AS attempts,
       sum(d.human + d.machine)::bigint AS connected,
       round(sum(d.human + d.machine)::numeric / nullif(sum(d.attempts), 0), 4) AS connection_rate
FROM analytics.daily_call_summary d
JOIN analytics.tenants t USING (tenant_id)
WHERE true [[AND t.slug = {{tenant}}]]
GROUP BY t.slug
ORDER BY t.slug
