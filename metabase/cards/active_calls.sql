-- Call attempts in progress (admitted in the last day, not ended), per tenant and phase.
SELECT a.tenant, a.phase, count(*) AS calls
FROM analytics.active_calls_view a
WHERE true [[AND a.tenant = {{tenant}}]]
GROUP BY a.tenant, a.phase
ORDER BY a.tenant, a.phase
