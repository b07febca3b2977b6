-- The stage runner's idempotency claims and stored outputs (the outbox).
--
-- A handler's first write in its transaction inserts (stage, event_id). A redelivered input
-- finds the row, skips the handler, and republishes `outputs` (encoded bus messages with
-- deterministic ids, which the stream's duplicate window or the next stage's own claim drops).
CREATE TABLE processed_events (
    stage        text        NOT NULL,
    event_id     uuid        NOT NULL,
    tenant_id    uuid        NOT NULL,
    -- MessagePack array of the bus messages the handler emitted; NULL when it emitted
    -- nothing (the claim and its outputs always commit in one transaction).
    outputs      bytea,
    output_count integer     NOT NULL DEFAULT 0,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stage, event_id)
);

-- Retention sweeps delete old claims by age.
CREATE INDEX processed_events_processed_at ON processed_events (processed_at);
