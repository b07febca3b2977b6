//! A recorded-contract simulator of the Metabase endpoints `caller metabase provision` calls,
//! following Metabase v0.50's API (its `/api/*` docs and `metabase.api.*` source; example
//! requests and answers are recorded in `tests/fixtures/metabase/`).
//!
//! It validates requests the way Metabase's schemas do (required fields and their types,
//! the `X-Metabase-Session` header), keeps every object it is given so a second run can be
//! checked for duplicates, and records each write (method and path) for assertions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

#[derive(Debug, Default)]
struct Store {
    user: String,
    password: String,
    sessions: BTreeSet<String>,
    next_id: i64,
    databases: BTreeMap<i64, Value>,
    collections: BTreeMap<i64, Value>,
    cards: BTreeMap<i64, Value>,
    dashboards: BTreeMap<i64, Value>,
    writes: Vec<String>,
}

impl Store {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }
}

/// The simulator's state, shared by its routes and the test that drives it.
#[derive(Debug, Clone, Default)]
pub struct MetabaseSim {
    store: Arc<Mutex<Store>>,
}

/// An error answer: JSON, or plain text when `body` is a string (as Metabase's 401 and 404).
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    body: Value,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self.body {
            Value::String(text) => (self.status, text).into_response(),
            body => (self.status, Json(body)).into_response(),
        }
    }
}

type Answer = Result<Json<Value>, Refusal>;

fn refuse(status: StatusCode, body: Value) -> Refusal {
    Refusal { status, body }
}

fn invalid(field: &str, problem: &str) -> Refusal {
    refuse(StatusCode::BAD_REQUEST, json!({"errors": {field: problem}}))
}

fn not_found() -> Refusal {
    refuse(StatusCode::NOT_FOUND, json!("Not found."))
}

fn require<'a>(
    body: &'a Value,
    field: &str,
    check: fn(&Value) -> bool,
    problem: &str,
) -> Result<&'a Value, Refusal> {
    let value = &body[field];
    if check(value) {
        Ok(value)
    } else {
        Err(invalid(field, problem))
    }
}

fn non_blank(value: &Value) -> bool {
    value.as_str().is_some_and(|text| !text.trim().is_empty())
}

impl MetabaseSim {
    /// Returns a fresh Metabase with one admin, `user` with `password`.
    pub fn new(user: &str, password: &str) -> Self {
        let sim = Self::default();
        {
            let mut store = sim.lock();
            store.user = user.to_owned();
            store.password = password.to_owned();
        }
        sim
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns every write made (`POST /api/card`, …), logins excepted, in order.
    pub fn writes(&self) -> Vec<String> {
        self.lock().writes.clone()
    }

    /// Returns every session token issued.
    pub fn sessions(&self) -> Vec<String> {
        self.lock().sessions.iter().cloned().collect()
    }

    /// Returns (databases, collections, cards, dashboards) as stored.
    pub fn objects(&self) -> (Vec<Value>, Vec<Value>, Vec<Value>, Vec<Value>) {
        let store = self.lock();
        (
            store.databases.values().cloned().collect(),
            store.collections.values().cloned().collect(),
            store.cards.values().cloned().collect(),
            store.dashboards.values().cloned().collect(),
        )
    }

    fn authenticate(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let token = headers
            .get("x-metabase-session")
            .and_then(|value| value.to_str().ok());
        match token {
            Some(token) if self.lock().sessions.contains(token) => Ok(()),
            // Metabase answers a missing or unknown session with a bare text body.
            _ => Err(refuse(StatusCode::UNAUTHORIZED, json!("Unauthenticated"))),
        }
    }

    /// Returns the router serving the simulated API.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/health", get(health))
            .route("/api/session", post(session))
            .route("/api/database", get(list_databases).post(create_database))
            .route("/api/database/{id}", axum::routing::put(update_database))
            .route(
                "/api/collection",
                get(list_collections).post(create_collection),
            )
            .route("/api/collection/{id}/items", get(collection_items))
            .route("/api/card", post(create_card))
            .route("/api/card/{id}", get(get_card).put(update_card))
            .route("/api/dashboard", post(create_dashboard))
            .route(
                "/api/dashboard/{id}",
                get(get_dashboard).put(update_dashboard),
            )
            .with_state(self.clone())
    }
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn session(State(sim): State<MetabaseSim>, Json(body): Json<Value>) -> Answer {
    require(
        &body,
        "username",
        non_blank,
        "value must be a non-blank string.",
    )?;
    require(
        &body,
        "password",
        non_blank,
        "value must be a non-blank string.",
    )?;
    let mut store = sim.lock();
    if body["username"] != store.user.as_str() || body["password"] != store.password.as_str() {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            json!({"errors": {"password": "did not match stored password"}}),
        ));
    }
    let token = uuid::Uuid::new_v4().to_string();
    store.sessions.insert(token.clone());
    Ok(Json(json!({"id": token})))
}

fn masked(database: &Value) -> Value {
    let mut shown = database.clone();
    if shown["details"]["password"].is_string() {
        shown["details"]["password"] = json!("**MetabasePass**");
    }
    shown
}

async fn list_databases(State(sim): State<MetabaseSim>, headers: HeaderMap) -> Answer {
    sim.authenticate(&headers)?;
    let data: Vec<Value> = sim.lock().databases.values().map(masked).collect();
    Ok(Json(json!({"data": data, "total": data.len()})))
}

fn check_database(body: &Value) -> Result<(), Refusal> {
    require(body, "name", non_blank, "value must be a non-blank string.")?;
    require(
        body,
        "engine",
        |v| v == "postgres",
        "value must be a valid database engine.",
    )?;
    let details = require(body, "details", Value::is_object, "value must be a map.")?;
    for field in ["host", "dbname", "user", "password"] {
        if !non_blank(&details[field]) {
            return Err(invalid(
                "details",
                &format!("`{field}` must be a non-blank string."),
            ));
        }
    }
    if !details["port"].is_u64() || !details["ssl"].is_boolean() {
        return Err(invalid(
            "details",
            "`port` must be an integer and `ssl` a boolean.",
        ));
    }
    Ok(())
}

async fn create_database(
    State(sim): State<MetabaseSim>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    sim.authenticate(&headers)?;
    check_database(&body)?;
    let mut store = sim.lock();
    let id = store.id();
    let database = json!({
        "id": id, "name": body["name"], "engine": "postgres", "details": body["details"],
        "is_full_sync": body["is_full_sync"].as_bool().unwrap_or(true), "is_sample": false,
    });
    store.databases.insert(id, database.clone());
    store.writes.push("POST /api/database".to_owned());
    Ok(Json(masked(&database)))
}

async fn update_database(
    State(sim): State<MetabaseSim>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(body): Json<Value>,
) -> Answer {
    sim.authenticate(&headers)?;
    check_database(&body)?;
    let mut store = sim.lock();
    let Some(database) = store.databases.get_mut(&id) else {
        return Err(not_found());
    };
    database["name"] = body["name"].clone();
    database["details"] = body["details"].clone();
    let shown = masked(database);
    store.writes.push(format!("PUT /api/database/{id}"));
    Ok(Json(shown))
}

async fn list_collections(State(sim): State<MetabaseSim>, headers: HeaderMap) -> Answer {
    sim.authenticate(&headers)?;
    let store = sim.lock();
    // The root collection comes first, with a string id, as in Metabase.
    let mut listing = vec![json!({
        "id": "root", "name": "Our analytics", "can_write": true, "effective_ancestors": [],
        "parent_id": null, "is_personal": false,
    })];
    listing.extend(store.collections.values().cloned());
    Ok(Json(Value::Array(listing)))
}

async fn create_collection(
    State(sim): State<MetabaseSim>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    sim.authenticate(&headers)?;
    require(
        &body,
        "name",
        non_blank,
        "value must be a non-blank string.",
    )?;
    require(
        &body,
        "parent_id",
        |v| v.is_null() || v.is_u64(),
        "nullable value must be an integer greater than zero.",
    )?;
    if body["parent_id"].is_u64() {
        return Err(invalid(
            "parent_id",
            "the simulator only makes top-level collections",
        ));
    }
    let mut store = sim.lock();
    let id = store.id();
    let collection = json!({
        "id": id, "name": body["name"], "description": body["description"], "archived": false,
        "location": "/", "personal_owner_id": null, "slug": body["name"].as_str().map(|n| n.to_lowercase().replace(' ', "_")),
    });
    store.collections.insert(id, collection.clone());
    store.writes.push("POST /api/collection".to_owned());
    Ok(Json(collection))
}

async fn collection_items(
    State(sim): State<MetabaseSim>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(query): Query<Vec<(String, String)>>,
) -> Answer {
    sim.authenticate(&headers)?;
    let store = sim.lock();
    if !store.collections.contains_key(&id) {
        return Err(not_found());
    }
    let models: BTreeSet<&str> = query
        .iter()
        .filter(|(k, _)| k == "models")
        .map(|(_, v)| v.as_str())
        .collect();
    let wanted = |model: &str| models.is_empty() || models.contains(model);
    let mut data = Vec::new();
    for (model, objects) in [("card", &store.cards), ("dashboard", &store.dashboards)] {
        if !wanted(model) {
            continue;
        }
        for object in objects
            .values()
            .filter(|o| o["collection_id"] == id && o["archived"] != true)
        {
            data.push(json!({"id": object["id"], "name": object["name"], "model": model, "description": object["description"]}));
        }
    }
    Ok(Json(
        json!({"data": data, "total": data.len(), "models": models, "limit": null, "offset": null}),
    ))
}

fn check_card(body: &Value, store: &Store, partial: bool) -> Result<(), Refusal> {
    let present = |field: &str| !partial || !body[field].is_null();
    if present("name") {
        require(body, "name", non_blank, "value must be a non-blank string.")?;
    }
    if present("display") {
        require(
            body,
            "display",
            non_blank,
            "value must be a non-blank string.",
        )?;
    }
    if present("visualization_settings") {
        require(
            body,
            "visualization_settings",
            Value::is_object,
            "value must be a map.",
        )?;
    }
    if !body["collection_id"].is_null() {
        let collection = body["collection_id"].as_i64().unwrap_or(0);
        if !store.collections.contains_key(&collection) {
            return Err(invalid("collection_id", "collection does not exist"));
        }
    }
    if present("dataset_query") {
        let query = require(
            body,
            "dataset_query",
            Value::is_object,
            "value must be a map.",
        )?;
        let database = query["database"].as_i64().unwrap_or(0);
        if query["type"] != "native" || !store.databases.contains_key(&database) {
            return Err(invalid(
                "dataset_query",
                "a native query on an existing database",
            ));
        }
        if !non_blank(&query["native"]["query"]) {
            return Err(invalid(
                "dataset_query",
                "`native.query` must be a non-blank string",
            ));
        }
        let tags = query["native"]["template-tags"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (name, tag) in &tags {
            let valid = tag["name"] == name.as_str()
                && non_blank(&tag["id"])
                && non_blank(&tag["display-name"])
                && ["text", "number", "date", "dimension"]
                    .iter()
                    .any(|t| tag["type"] == *t);
            if !valid {
                return Err(invalid(
                    "dataset_query",
                    &format!("template tag `{name}` is malformed"),
                ));
            }
        }
    }
    Ok(())
}

async fn create_card(
    State(sim): State<MetabaseSim>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    sim.authenticate(&headers)?;
    let mut store = sim.lock();
    check_card(&body, &store, false)?;
    let id = store.id();
    let mut card = body;
    card["id"] = json!(id);
    card["archived"] = json!(false);
    card["query_type"] = json!("native");
    store.cards.insert(id, card.clone());
    store.writes.push("POST /api/card".to_owned());
    Ok(Json(card))
}

async fn get_card(
    State(sim): State<MetabaseSim>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Answer {
    sim.authenticate(&headers)?;
    sim.lock()
        .cards
        .get(&id)
        .cloned()
        .map(Json)
        .ok_or_else(not_found)
}

async fn update_card(
    State(sim): State<MetabaseSim>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(body): Json<Value>,
) -> Answer {
    sim.authenticate(&headers)?;
    let mut store = sim.lock();
    check_card(&body, &store, true)?;
    let Some(card) = store.cards.get_mut(&id) else {
        return Err(not_found());
    };
    for (field, value) in body.as_object().into_iter().flatten() {
        card[field] = value.clone();
    }
    let card = card.clone();
    store.writes.push(format!("PUT /api/card/{id}"));
    Ok(Json(card))
}

fn check_parameters(body: &Value) -> Result<(), Refusal> {
    if body["parameters"].is_null() {
        return Ok(());
    }
    let parameters = require(
        body,
        "parameters",
        Value::is_array,
        "value must be an array.",
    )?;
    for parameter in parameters.as_array().into_iter().flatten() {
        if !["id", "slug", "type"]
            .iter()
            .all(|field| non_blank(&parameter[field]))
        {
            return Err(invalid(
                "parameters",
                "each parameter needs `id`, `slug` and `type`",
            ));
        }
    }
    Ok(())
}

async fn create_dashboard(
    State(sim): State<MetabaseSim>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    sim.authenticate(&headers)?;
    require(
        &body,
        "name",
        non_blank,
        "value must be a non-blank string.",
    )?;
    check_parameters(&body)?;
    let mut store = sim.lock();
    if let Some(collection) = body["collection_id"].as_i64()
        && !store.collections.contains_key(&collection)
    {
        return Err(invalid("collection_id", "collection does not exist"));
    }
    let id = store.id();
    let dashboard = json!({
        "id": id, "name": body["name"], "description": body["description"],
        "collection_id": body["collection_id"], "parameters": body["parameters"].as_array().cloned().unwrap_or_default(),
        "dashcards": [], "archived": false,
    });
    store.dashboards.insert(id, dashboard.clone());
    store.writes.push("POST /api/dashboard".to_owned());
    Ok(Json(dashboard))
}

async fn get_dashboard(
    State(sim): State<MetabaseSim>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Answer {
    sim.authenticate(&headers)?;
    sim.lock()
        .dashboards
        .get(&id)
        .cloned()
        .map(Json)
        .ok_or_else(not_found)
}

async fn update_dashboard(
    State(sim): State<MetabaseSim>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(body): Json<Value>,
) -> Answer {
    sim.authenticate(&headers)?;
    check_parameters(&body)?;
    let mut store = sim.lock();
    let Some(stored) = store.dashboards.get(&id).cloned() else {
        return Err(not_found());
    };
    let parameters = if body["parameters"].is_array() {
        body["parameters"].clone()
    } else {
        stored["parameters"].clone()
    };
    let parameter_ids: BTreeSet<String> = parameters
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["id"].as_str().map(str::to_owned))
        .collect();
    let mut dashboard = stored.clone();
    if let Some(dashcards) = body.get("dashcards") {
        let Some(dashcards) = dashcards.as_array() else {
            return Err(invalid("dashcards", "value must be an array."));
        };
        let existing: BTreeSet<i64> = stored["dashcards"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["id"].as_i64())
            .collect();
        let mut kept = Vec::new();
        for dashcard in dashcards {
            let fields_ok = ["row", "col", "size_x", "size_y"]
                .iter()
                .all(|f| dashcard[f].is_u64())
                && dashcard["id"].is_i64();
            if !fields_ok {
                return Err(invalid(
                    "dashcards",
                    "each dashcard needs integer `id`, `row`, `col`, `size_x`, `size_y`",
                ));
            }
            let card_id = dashcard["card_id"].as_i64().unwrap_or(0);
            if !store.cards.contains_key(&card_id) {
                return Err(invalid(
                    "dashcards",
                    &format!("card {card_id} does not exist"),
                ));
            }
            for mapping in dashcard["parameter_mappings"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let known = mapping["parameter_id"]
                    .as_str()
                    .is_some_and(|p| parameter_ids.contains(p));
                if !known || mapping["card_id"] != card_id || !mapping["target"].is_array() {
                    return Err(invalid(
                        "dashcards",
                        "a parameter mapping names an unknown parameter or card",
                    ));
                }
            }
            let given = dashcard["id"].as_i64().unwrap_or(0);
            let dashcard_id = if given < 0 {
                store.next_id += 1;
                store.next_id
            } else if existing.contains(&given) {
                given
            } else {
                return Err(invalid(
                    "dashcards",
                    &format!("dashcard {given} is not on this dashboard"),
                ));
            };
            let mut saved = dashcard.clone();
            saved["id"] = json!(dashcard_id);
            saved["dashboard_id"] = json!(id);
            if saved["parameter_mappings"].is_null() {
                saved["parameter_mappings"] = json!([]);
            }
            kept.push(saved);
        }
        dashboard["dashcards"] = Value::Array(kept);
    }
    for field in ["name", "description"] {
        if !body[field].is_null() {
            dashboard[field] = body[field].clone();
        }
    }
    dashboard["parameters"] = parameters;
    store.dashboards.insert(id, dashboard.clone());
    store.writes.push(format!("PUT /api/dashboard/{id}"));
    Ok(Json(dashboard))
}
