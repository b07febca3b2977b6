//! The operational HTTP surface every role serves: `/healthz`, `/readyz`, `/metrics`.
//!
//! The management API (`crate::api`) is mounted beside these by `app::run`; webhook ingress
//! routes come with the ingress issue. Errors are `application/problem+json` (RFC 9457).

pub mod form;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::bus::Bus;
use crate::metrics::{ConsumerGauge, Metrics, PlatformGauges};
use crate::pipeline::StageSpec;
use crate::shutdown::Shutdown;
use crate::store::Store;

/// Shared state of the operational endpoints.
#[derive(Clone, Debug)]
pub struct HttpState {
    /// The bus (readiness, consumer gauges).
    pub bus: Bus,
    /// The database (readiness).
    pub store: Store,
    /// Stage counters.
    pub metrics: Metrics,
    /// Stages whose consumers `/metrics` reports.
    pub stages: Arc<Vec<StageSpec>>,
}

/// Returns an RFC 9457 problem response.
pub fn problem(status: StatusCode, title: &str, detail: &str) -> Response {
    let code = status
        .canonical_reason()
        .unwrap_or("error")
        .to_lowercase()
        .replace(' ', "_");
    let body = json!({
        "type": format!("https://caller.dev/problems/{code}"), "title": title,
        "status": status.as_u16(), "code": code, "detail": detail,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

/// Returns the router of the operational endpoints.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Counts every answered request in `caller_http_requests_total` by route template and
/// status; apply it to the merged router (route templates exist only on matched routes).
pub fn with_request_counts(router: Router, metrics: Metrics) -> Router {
    router.layer(axum::middleware::from_fn_with_state(metrics, count_request))
}

async fn count_request(
    State(metrics): State<Metrics>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("<unmatched>", axum::extract::MatchedPath::as_str)
        .to_owned();
    let response = next.run(request).await;
    metrics.count_request(&route, response.status().as_u16());
    response
}

/// Adds the problem+json 404 for unknown routes (after every router is merged in).
pub fn with_fallback(router: Router) -> Router {
    router.fallback(|| async { problem(StatusCode::NOT_FOUND, "not found", "no such route") })
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<HttpState>) -> Response {
    let nats = if state.bus.is_connected() {
        Ok(())
    } else {
        Err("nats: disconnected".to_owned())
    };
    let postgres = match tokio::time::timeout(Duration::from_secs(2), state.store.is_ready()).await
    {
        Ok(result) => result,
        Err(_) => Err("postgres: no answer within 2s".to_owned()),
    };
    let show = |result: &Result<(), String>| match result {
        Ok(()) => "ok".to_owned(),
        Err(reason) => reason.clone(),
    };
    let checks = json!({ "nats": show(&nats), "postgres": show(&postgres) });
    if nats.is_ok() && postgres.is_ok() {
        Json(json!({ "status": "ready", "checks": checks })).into_response()
    } else {
        let body = json!({
            "type": "about:blank", "title": "not ready", "status": 503,
            "detail": "a dependency is unavailable", "checks": checks,
        });
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}

async fn metrics(State(state): State<HttpState>) -> Response {
    let mut gauges = Vec::new();
    for stage in state.stages.iter() {
        let lookup = async {
            let stream = state.bus.jetstream().get_stream(&stage.stream).await.ok()?;
            stream.consumer_info(&stage.consumer).await.ok()
        };
        if let Ok(Some(info)) = tokio::time::timeout(Duration::from_secs(1), lookup).await {
            gauges.push(ConsumerGauge {
                stage: stage.name.clone(),
                pending: info.num_pending,
                ack_pending: info.num_ack_pending as u64,
                redelivered: info.num_redelivered as u64,
            });
        }
    }
    let platform = tokio::time::timeout(Duration::from_secs(1), platform_gauges(&state.store))
        .await
        .unwrap_or_default();
    let body = state.metrics.render_with(&gauges, &platform);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Reads the platform-wide gauges; what the database does not answer is left out.
async fn platform_gauges(store: &Store) -> PlatformGauges {
    let scheduled = async {
        let mut tx = store.begin_platform().await?;
        let backlog =
            crate::store::scheduled_jobs::backlog(&mut tx, chrono::TimeDelta::minutes(5)).await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(backlog)
    }
    .await
    .ok()
    .map(|(due, overdue)| {
        (
            u64::try_from(due).unwrap_or_default(),
            u64::try_from(overdue).unwrap_or_default(),
        )
    });
    let open_alerts = crate::store::alerts::open_by_kind(store)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(kind, count)| (kind, u64::try_from(count).unwrap_or_default()))
        .collect();
    PlatformGauges {
        scheduled,
        open_alerts,
    }
}

/// Serves `router` on `listener` until `shutdown`, then finishes open requests.
///
/// Accepted sockets have `TCP_NODELAY`: the media gateway writes a small frame every 20 ms per
/// call, and Nagle's algorithm would hold one back until the peer's (delayed, up to 40 ms)
/// acknowledgement of the previous one.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    use axum::serve::ListenerExt as _;
    let listener = listener.tap_io(|socket| {
        if let Err(error) = socket.set_nodelay(true) {
            tracing::warn!(%error, "TCP_NODELAY not set on an accepted socket");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}
