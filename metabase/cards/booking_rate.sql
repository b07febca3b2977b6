-- Booking rate: appointments booked per conversation and per new lead, per tenant (all time).
SELECT t.slug AS tenant,
       sum(d.leads)::bigint AS leads,
       sum(d.conversations)::bigint AS conversations,
       sum(d.bookings)::bigint AS bookings,
       round(sum(d.bookings)::numeric / nullif(sum(d.conversations), 0), 4) AS per_conversation,
       round(sum(d.bookings)::numeric / nullif(sum(d.leads), 0), 4) AS per_lead
FROM analytics.daily_call_summary d
JOIN analytics.tenants t USING (tenant_id)
WHERE true [[AND t.slug = {{tenant}}]]
GROUP BY t.slug
ORDER BY t.slug
