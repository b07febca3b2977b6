-- Booked revenue per month and lead source (appointments valued at the tenant's configured
-- appointment value when they were booked; currency `none` when no value was configured).
SELECT m.month, t.slug AS tenant, m.lead_source, m.currency, m.bookings,
       round(m.value_cents / 100.0, 2) AS value
FROM analytics.monthly_revenue_attribution m
JOIN analytics.tenants t USING (tenant_id)
WHERE true [[AND t.slug = {{tenant}}]]
ORDER BY m.month, t.slug, m.lead_source, m.currency
