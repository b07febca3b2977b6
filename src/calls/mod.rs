//! Calls: the call state machine and calling windows (pure logic; the stages that use them are
//! `rate_limit` and `dial`, with the call tables of `migrations/…0004_calls.sql`).

pub mod state;
pub mod window;
