-- A callback the lead asks for on a call (the agent's schedule_callback tool) is a scheduled
-- job like a retry or a follow-up stage: listed, cancelled and fired the same way (ADR 0020).
ALTER TABLE scheduled_jobs DROP CONSTRAINT scheduled_jobs_kind_check;
ALTER TABLE scheduled_jobs
    ADD CONSTRAINT scheduled_jobs_kind_check CHECK (kind IN ('retry', 'follow_up', 'callback'));
