//! The management API under `/v1`: clients, configuration, feature flags, credentials, API
//! keys, audit log, the schedule (scheduled attempts, follow-up campaigns, retry schedules); its OpenAPI 3.1 document is generated from the handlers and served at
//! `/v1/openapi.json`.
//!
//! Every route under `/v1/clients/{client_id}` is scoped to that client before anything else
//! runs (see [`auth`]), and every handler opens its transaction for that one tenant, so
//! row-level security backs the application's own scoping.

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod blocklist;
pub mod bulk;
pub mod calls;
pub mod clients;
pub mod credentials;
pub mod dead_letters;
pub mod error;
pub mod extract;
pub mod follow_ups;
pub mod keys;
pub mod leads;
pub mod schedule;
pub mod settings;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::crypto::Keyring;
use crate::store::Store;

/// What handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The database (as the application role).
    pub store: Store,
    /// Master keys for sealing credentials.
    pub keyring: Arc<Keyring>,
    /// Per-key rate limits.
    pub rate_limits: Arc<auth::KeyRateLimits>,
    /// HTTP client for provider healthchecks.
    pub http: reqwest::Client,
    /// Default overlap of a rotated key, in seconds.
    pub key_rotation_overlap_secs: u64,
    /// Lead ingress (publishing, limits, the tenant directory); without it the lead routes
    /// answer 503 and changes are not announced.
    pub ingress: Option<Arc<crate::ingress::Ingress>>,
}

impl AppState {
    /// Builds the state.
    pub fn new(store: Store, keyring: Keyring, settings: &crate::settings::ApiSettings) -> Self {
        Self::from_parts(store, Arc::new(keyring), settings)
    }

    /// Builds the state around a shared keyring.
    pub fn from_parts(
        store: Store,
        keyring: Arc<Keyring>,
        settings: &crate::settings::ApiSettings,
    ) -> Self {
        Self {
            store,
            keyring,
            rate_limits: Arc::default(),
            http: crate::providers::http::client(),
            key_rotation_overlap_secs: settings.key_rotation_overlap_secs,
            ingress: None,
        }
    }

    /// Adds lead ingress: `/v1/calls`, bulk uploads, dead letters, and change notifications.
    #[must_use]
    pub fn with_ingress(mut self, ingress: Arc<crate::ingress::Ingress>) -> Self {
        self.ingress = Some(ingress);
        self
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "caller management API", description = "Clients, configuration, credentials, API keys and audit of the caller platform."),
    modifiers(&BearerKeys),
    components(schemas(error::Problem)),
    tags(
        (name = "clients", description = "client businesses (tenants)"),
        (name = "configuration", description = "providers, hours, windows, limits"),
        (name = "features", description = "feature flags and A/B variants"),
        (name = "credentials", description = "sealed provider credentials"),
        (name = "api-keys", description = "management API keys"),
        (name = "audit", description = "append-only audit log"),
        (name = "leads", description = "call requests: one with an Idempotency-Key, or bulk"),
        (name = "blocklist", description = "do-not-call and opt-out numbers"),
        (name = "calls", description = "calls, their attempts and state changes"),
        (name = "dead-letters", description = "what the pipeline gave up on, with the reason"),
        (name = "schedule", description = "scheduled attempts (retries, follow-up stages): list, cancel, move"),
        (name = "follow-up-campaigns", description = "multi-stage follow-up campaigns on the lead's clock"),
        (name = "retry-schedules", description = "retry policies of calling campaigns"),
    )
)]
struct ApiDoc;

struct BearerKeys;

impl Modify for BearerKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("ck_live_…")
                    .description(Some("An API key: `Authorization: Bearer ck_live_…`"))
                    .build(),
            ),
        );
    }
}

/// Returns the routes and the OpenAPI document they generate.
pub fn routes(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let per_client = OpenApiRouter::new()
        .routes(routes!(clients::get, clients::update))
        .routes(routes!(clients::disable))
        .routes(routes!(clients::enable))
        .routes(routes!(
            settings::get_configuration,
            settings::put_configuration
        ))
        .routes(routes!(settings::list_features))
        .routes(routes!(settings::put_feature, settings::delete_feature))
        .routes(routes!(credentials::list))
        .routes(routes!(credentials::put, credentials::delete))
        .routes(routes!(credentials::healthcheck))
        .routes(routes!(keys::list, keys::create))
        .routes(routes!(keys::rotate))
        .routes(routes!(keys::revoke))
        .routes(routes!(audit::list))
        .routes(routes!(blocklist::list, blocklist::add))
        .routes(routes!(blocklist::remove))
        .routes(routes!(dead_letters::list))
        .routes(routes!(alerts::list))
        .routes(routes!(calls::list))
        .routes(routes!(calls::get))
        .routes(routes!(schedule::list))
        .routes(routes!(schedule::cancel))
        .routes(routes!(schedule::reschedule))
        .routes(routes!(schedule::cancel_for_lead))
        .routes(routes!(follow_ups::list, follow_ups::create))
        .routes(routes!(
            follow_ups::get,
            follow_ups::replace,
            follow_ups::delete
        ))
        .routes(routes!(follow_ups::pause))
        .routes(routes!(follow_ups::resume))
        .routes(routes!(follow_ups::list_retry_schedules))
        .routes(routes!(
            follow_ups::put_retry_schedule,
            follow_ups::delete_retry_schedule
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            announce_changes,
        ))
        .route_layer(axum::middleware::from_fn(auth::scope_to_client));
    let authenticated = OpenApiRouter::new()
        .routes(routes!(clients::list, clients::create))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            announce_new_clients,
        ))
        .routes(routes!(leads::create_call))
        .routes(routes!(leads::bulk_leads))
        .merge(per_client)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(authenticated)
        .with_state(state)
        .split_for_parts()
}

/// Announces `tenancy.changed.<tenant>` after every successful change under
/// `/v1/clients/{client_id}`, so tenant snapshot caches in every process drop it.
async fn announce_changes(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let changes = request.method() != axum::http::Method::GET;
    let tenant = request
        .extensions()
        .get::<auth::ClientAccess>()
        .map(|access| access.0);
    let response = next.run(request).await;
    if changes
        && response.status().is_success()
        && let (Some(tenant), Some(ingress)) = (tenant, &state.ingress)
    {
        ingress.directory.invalidate(tenant);
        crate::tenancy::directory::notify_changed(&ingress.bus, tenant).await;
    }
    response
}

/// Announces `tenancy.changed.all` after a client was created (`POST /v1/clients`): its
/// location or organization may be cached as unclaimed.
async fn announce_new_clients(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let creates =
        request.method() == axum::http::Method::POST && request.uri().path() == "/v1/clients";
    let response = next.run(request).await;
    if creates
        && response.status().is_success()
        && let Some(ingress) = &state.ingress
    {
        ingress.directory.clear();
        crate::tenancy::directory::notify_all_changed(&ingress.bus).await;
    }
    response
}

/// Returns the management API router, with `/v1/openapi.json`.
pub fn router(state: AppState, settings: &crate::settings::ApiSettings) -> Router {
    let (router, openapi) = routes(state);
    let document = Arc::new(openapi);
    router
        .route(
            "/v1/openapi.json",
            get(move || async move { Json(document.as_ref().clone()) }),
        )
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(axum::middleware::from_fn(auth::request_id))
}

/// Returns the OpenAPI document (for `caller` tooling and tests).
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
