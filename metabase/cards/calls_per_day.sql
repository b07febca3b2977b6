-- Calls per day in each tenant's own time zone: attempts by outcome, conversations, bookings.
SELECT d.day, t.slug AS tenant, d.leads, d.attempts, d.human, d.machine, d.no_answer, d.busy,
       d.failed + d.cancelled + d.unknown AS other, d.conversations, d.bookings
FROM analytics.daily_call_summary d
JOIN analytics.tenants t USING (tenant_id)
WHERE true [[AND t.slug = {{tenant}}]]
ORDER BY d.day, t.slug
