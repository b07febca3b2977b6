-- Every tenant's last 24 hours and 7 days at a glance, with the health verdict.
SELECT tenant, name, health, attempts_24h, answered_24h, answer_rate_24h, failed_24h,
       bookings_7d, booking_rate_7d, round(sentiment_7d::numeric, 3) AS sentiment_7d, queued_now
FROM analytics.client_health_dashboard
WHERE true [[AND tenant = {{tenant}}]]
ORDER BY tenant
