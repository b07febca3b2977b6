//! Tracing set-up: JSON lines by default, pretty for a terminal.
//!
//! Every stage message runs inside one span carrying `stage`, `tenant_id`, `call_id` and
//! `event_id` (see `bus::runner`), so each log line of a message can be found by any of them.

use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, LogSettings};

/// Installs the global subscriber; a second call (tests) is a no-op.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_env("CALLER_LOG")
        .unwrap_or_else(|_| EnvFilter::new(settings.filter.clone()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    // Already installed (several roles or tests in one process): keep the first.
    drop(result);
}

/// Installs a subscriber for tests: silent unless `TEST_LOG` is set.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        init(&LogSettings {
            format: LogFormat::Pretty,
            filter: "debug".to_owned(),
        });
    }
}
