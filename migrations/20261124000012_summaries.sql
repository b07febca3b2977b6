-- Conversation summaries (issue 9): one per answered attempt, written by the summarize stage
-- from our transcript, tool calls and bookings, merged with the voice provider's post-call
-- analysis when it came. Upserted by attempt, so a replayed conversation.ended rewrites the
-- same row.
CREATE TABLE conversation_summaries (
    attempt_id        uuid        PRIMARY KEY REFERENCES conversations (attempt_id) ON DELETE CASCADE,
    call_id           uuid        NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    tenant_id         uuid        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    -- The summary shown to people: the provider's when it sent one, else ours.
    summary           text        NOT NULL CHECK (length(summary) <= 4000),
    -- Ours, always kept (extractive, or the tenant's LLM).
    own_summary       text        NOT NULL CHECK (length(own_summary) <= 4000),
    provider_summary  text,
    -- Who wrote `own_summary`.
    source            text        NOT NULL CHECK (source IN ('extractive', 'llm')),
    outcome           text        NOT NULL CHECK (outcome IN (
                          'booked', 'callback_requested', 'not_interested', 'wrong_number',
                          'do_not_call', 'voicemail', 'no_answer', 'transferred', 'completed')),
    -- Why that outcome (the rule that decided it), for people checking the classifier.
    outcome_reason    text        NOT NULL CHECK (length(outcome_reason) <= 500),
    sentiment         text        NOT NULL CHECK (sentiment IN ('positive', 'neutral', 'negative')),
    -- The caller's lexicon score in [-1, 1].
    sentiment_score   real        NOT NULL CHECK (sentiment_score BETWEEN -1 AND 1),
    -- The provider's verdict (`success`, `failure`, `unknown`), when it sent one.
    call_successful   text,
    key_points        text[]      NOT NULL DEFAULT '{}',
    -- The provider's data collection and evaluation criteria results, as they came.
    data_collection   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    evaluation        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
SELECT manage_updated_at('conversation_summaries');
CREATE INDEX conversation_summaries_call ON conversation_summaries (call_id);
CREATE INDEX conversation_summaries_tenant_outcome ON conversation_summaries (tenant_id, outcome);

ALTER TABLE conversation_summaries ENABLE ROW LEVEL SECURITY;
ALTER TABLE conversation_summaries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON conversation_summaries
    USING (app_is_platform() OR tenant_id = app_tenant_id())
    WITH CHECK (app_is_platform() OR tenant_id = app_tenant_id());

GRANT SELECT, INSERT, UPDATE, DELETE ON conversation_summaries TO caller_app;
