-- Queue depth of every durable consumer at its latest snapshot: messages waiting to be
-- delivered, delivered but unacknowledged, and redelivered. Platform-wide (the bus is shared
-- by every tenant), so this card has no tenant filter.
SELECT stream, consumer, pending, ack_pending, redelivered, waiting
FROM analytics.queue_status_view
ORDER BY stream, consumer
