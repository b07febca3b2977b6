//! Calls: the call state machine and calling windows (pure logic; the stages that use them are
//! `rate_limit` and `dial`, with the call tables of `migrations/…0004_calls.sql`).

pub mod caller_id;
pub mod state;
pub mod stream_token;
pub mod twiml;
pub mod window;
