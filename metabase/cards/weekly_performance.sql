-- Weekly performance (weeks start on Monday, in the tenant's time zone): the funnel and the
-- summaries' sentiment.
SELECT w.week, t.slug AS tenant, w.leads, w.attempts, w.human AS answered, w.conversations,
       w.bookings, round(w.talk_secs::numeric / nullif(w.conversations, 0), 1) AS avg_talk_secs,
       w.positive, w.neutral, w.negative
FROM analytics.weekly_performance_summary w
JOIN analytics.tenants t USING (tenant_id)
WHERE true [[AND t.slug = {{tenant}}]]
ORDER BY w.week, t.slug
