-- The agent per day: turns and tool calls per conversation, the booked share of summaries,
-- average sentiment, and the voice provider's own success verdicts.
SELECT a.day, t.slug AS tenant, a.conversations,
       round(a.turns::numeric / nullif(a.conversations, 0), 2) AS turns_per_conversation,
       round(a.tool_calls::numeric / nullif(a.conversations, 0), 2) AS tool_calls_per_conversation,
       a.resumes, a.summaries,
       round(a.booked::numeric / nullif(a.summaries, 0), 4) AS booked_share,
       round((a.sentiment_sum / nullif(a.summaries, 0))::numeric, 3) AS avg_sentiment,
       a.positive, a.neutral, a.negative, a.provider_success, a.provider_failure
FROM analytics.ai_performance_trends a
JOIN analytics.tenants t USING (tenant_id)
WHERE true [[AND t.slug = {{tenant}}]]
ORDER BY a.day, t.slug
