-- Answer rate: the share of ended call attempts a person answered, per tenant (all time).
SELECT t.slug AS tenant,
       sum(d.attempts)::bigint AS attempts,
       sum(d.human)::bigint AS answered,
       round(sum(d.human)::numeric / nullif(sum(d.attempts), 0), 4) AS answer_rate
FROM analytics.daily_call_summary d
JOIN analytics.tenants t USING (tenant_id)
WHERE true [[AND t.slug = {{tenant}}]]
GROUP BY t.slug
ORDER BY t.slug
