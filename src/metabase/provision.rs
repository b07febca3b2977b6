//! `caller metabase provision`: the `caller` database connection, one collection, every card
//! and every dashboard of [`Definitions`], created or brought up to date through the API.
//!
//! Idempotent by name: each object is looked up by its name (the database among
//! `GET /api/database`, the collection among the top-level collections, cards and dashboards
//! among the collection's items), compared field by field with what `metabase/` defines, and
//! written only when it differs. A second run with the same definitions writes nothing.
//!
//! NOTE: Metabase never returns a stored database password (it answers `**MetabasePass**`),
//! so a changed reader password alone is not detected; `--update-password` sends it anyway.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::api::{MetabaseClient, MetabaseError};
use super::{CardDefinition, DashboardDefinition, Definitions};
use crate::secret::Secret;

/// The database details Metabase connects with: a login role of `caller_analytics_reader`.
#[derive(Debug, Clone)]
pub struct DatabaseConnection {
    /// Host as Metabase reaches PostgreSQL (in compose: `postgres`).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database name.
    pub dbname: String,
    /// The reader login role.
    pub user: String,
    /// Its password.
    pub password: Secret<String>,
    /// Require TLS.
    pub ssl: bool,
    /// Send the password even when every other detail is unchanged.
    pub update_password: bool,
}

/// What provisioning did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// It did not exist.
    Created,
    /// It existed and differed.
    Updated,
    /// It existed as defined.
    Unchanged,
}

/// One object provisioning looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `database`, `collection`, `card` or `dashboard`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// Its Metabase id.
    pub id: i64,
    /// What was done.
    pub change: Change,
}

/// The dashboard filter wired to every card's `{{tenant}}` variable.
const TENANT_PARAMETER: &str = "tenant";

/// Provisions everything `definitions` holds into the Metabase `client` is logged in to.
pub async fn provision(
    client: &MetabaseClient,
    definitions: &Definitions,
    connection: &DatabaseConnection,
) -> Result<Vec<Outcome>, MetabaseError> {
    let mut outcomes = Vec::new();
    let database = ensure_database(client, &definitions.database, connection).await?;
    outcomes.push(database.clone());
    let collection = ensure_collection(client, &definitions.collection).await?;
    outcomes.push(collection.clone());
    let items_path = format!(
        "/api/collection/{}/items?models=card&models=dashboard",
        collection.id
    );
    let items = client.get(&items_path).await?;
    let existing = |model: &str| -> BTreeMap<String, i64> {
        items["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|item| item["model"] == model)
            .filter_map(|item| Some((item["name"].as_str()?.to_owned(), item["id"].as_i64()?)))
            .collect()
    };
    let (cards, dashboards) = (existing("card"), existing("dashboard"));
    let mut card_ids = BTreeMap::new();
    for card in definitions.cards.values() {
        let outcome = ensure_card(
            client,
            card,
            cards.get(&card.name).copied(),
            database.id,
            collection.id,
        )
        .await?;
        card_ids.insert(card.key.clone(), outcome.id);
        outcomes.push(outcome);
    }
    for dashboard in &definitions.dashboards {
        let outcome = ensure_dashboard(
            client,
            dashboard,
            dashboards.get(&dashboard.name).copied(),
            collection.id,
            definitions,
            &card_ids,
        )
        .await?;
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

fn id_of(
    client: &MetabaseClient,
    method: Method,
    path: &str,
    body: &Value,
) -> Result<i64, MetabaseError> {
    body["id"]
        .as_i64()
        .ok_or_else(|| client.unexpected(method, path, "no numeric `id` in the answer".to_owned()))
}

async fn ensure_database(
    client: &MetabaseClient,
    name: &str,
    connection: &DatabaseConnection,
) -> Result<Outcome, MetabaseError> {
    // Only `analytics` is synced: the reader can read nothing else, and Metabase would
    // otherwise list every application table as inaccessible.
    let details = json!({
        "host": connection.host,
        "port": connection.port,
        "dbname": connection.dbname,
        "user": connection.user,
        "password": connection.password.expose(),
        "ssl": connection.ssl,
        "schema-filters-type": "inclusion",
        "schema-filters-patterns": "analytics",
        "tunnel-enabled": false,
        "advanced-options": false,
    });
    let body =
        json!({"name": name, "engine": "postgres", "details": details, "is_full_sync": true});
    let listing = client.get("/api/database").await?;
    let found = listing["data"]
        .as_array()
        .ok_or_else(|| {
            client.unexpected(Method::GET, "/api/database", "no `data` list".to_owned())
        })?
        .iter()
        .find(|database| database["name"] == name)
        .cloned();
    let Some(found) = found else {
        let created = client.post("/api/database", &body).await?;
        let id = id_of(client, Method::POST, "/api/database", &created)?;
        return Ok(Outcome {
            kind: "database",
            name: name.to_owned(),
            id,
            change: Change::Created,
        });
    };
    let id = id_of(client, Method::GET, "/api/database", &found)?;
    let compared = [
        "host",
        "port",
        "dbname",
        "user",
        "ssl",
        "schema-filters-type",
        "schema-filters-patterns",
    ];
    let same = found["engine"] == "postgres"
        && compared
            .iter()
            .all(|key| found["details"][key] == details[key]);
    if same && !connection.update_password {
        return Ok(Outcome {
            kind: "database",
            name: name.to_owned(),
            id,
            change: Change::Unchanged,
        });
    }
    client.put(&format!("/api/database/{id}"), &body).await?;
    Ok(Outcome {
        kind: "database",
        name: name.to_owned(),
        id,
        change: Change::Updated,
    })
}

async fn ensure_collection(client: &MetabaseClient, name: &str) -> Result<Outcome, MetabaseError> {
    let listing = client.get("/api/collection").await?;
    // The listing also holds the root collection (id "root") and users' personal collections.
    let found = listing
        .as_array()
        .ok_or_else(|| client.unexpected(Method::GET, "/api/collection", "not a list".to_owned()))?
        .iter()
        .find(|collection| {
            collection["name"] == name
                && collection["archived"] != true
                && collection["personal_owner_id"].is_null()
                && collection["location"] == "/"
                && collection["id"].is_i64()
        })
        .cloned();
    if let Some(found) = found {
        let id = id_of(client, Method::GET, "/api/collection", &found)?;
        return Ok(Outcome {
            kind: "collection",
            name: name.to_owned(),
            id,
            change: Change::Unchanged,
        });
    }
    let body = json!({
        "name": name,
        "description": "Made by `caller metabase provision` from metabase/ in the caller repository.",
        "parent_id": null,
    });
    let created = client.post("/api/collection", &body).await?;
    let id = id_of(client, Method::POST, "/api/collection", &created)?;
    Ok(Outcome {
        kind: "collection",
        name: name.to_owned(),
        id,
        change: Change::Created,
    })
}

/// Returns a template tag id that stays the same across runs (Metabase accepts any string;
/// its UI makes UUIDs, so this is one derived from the card and variable).
fn tag_id(card: &str, variable: &str) -> String {
    let digest = Sha256::digest(format!("caller/{card}/{variable}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

fn card_body(card: &CardDefinition, database: i64, collection: i64) -> Value {
    let tags: serde_json::Map<String, Value> = card
        .variables
        .iter()
        .map(|variable| {
            (
                variable.clone(),
                json!({
                    "id": tag_id(&card.key, variable),
                    "name": variable,
                    "display-name": capitalized(variable),
                    "type": "text",
                }),
            )
        })
        .collect();
    json!({
        "name": card.name,
        "description": card.description(),
        "collection_id": collection,
        "display": card.display,
        "visualization_settings": {},
        "dataset_query": {
            "type": "native",
            "database": database,
            "native": {"query": card.sql, "template-tags": tags},
        },
    })
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn card_matches(existing: &Value, desired: &Value) -> bool {
    let query = |card: &Value| card["dataset_query"].clone();
    let (have, want) = (query(existing), query(desired));
    let tags_match = {
        let have_tags = have["native"]["template-tags"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let want_tags = want["native"]["template-tags"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        have_tags.len() == want_tags.len()
            && want_tags.iter().all(|(name, tag)| {
                ["id", "name", "display-name", "type"].iter().all(|key| {
                    have_tags
                        .get(name)
                        .is_some_and(|have| have[key] == tag[key])
                })
            })
    };
    ["description", "collection_id", "display"]
        .iter()
        .all(|key| existing[key] == desired[key])
        && have["type"] == want["type"]
        && have["database"] == want["database"]
        && have["native"]["query"] == want["native"]["query"]
        && tags_match
}

async fn ensure_card(
    client: &MetabaseClient,
    card: &CardDefinition,
    existing: Option<i64>,
    database: i64,
    collection: i64,
) -> Result<Outcome, MetabaseError> {
    let body = card_body(card, database, collection);
    let outcome = |id, change| Outcome {
        kind: "card",
        name: card.name.clone(),
        id,
        change,
    };
    let Some(id) = existing else {
        let created = client.post("/api/card", &body).await?;
        let id = id_of(client, Method::POST, "/api/card", &created)?;
        return Ok(outcome(id, Change::Created));
    };
    let path = format!("/api/card/{id}");
    let stored = client.get(&path).await?;
    if card_matches(&stored, &body) {
        return Ok(outcome(id, Change::Unchanged));
    }
    client.put(&path, &body).await?;
    Ok(outcome(id, Change::Updated))
}

fn dashboard_parameters() -> Value {
    json!([{
        "id": TENANT_PARAMETER,
        "name": "Tenant",
        "slug": TENANT_PARAMETER,
        "type": "string/=",
        "sectionId": "string",
    }])
}

/// A dashcard as defined: (card id, row, col, size_x, size_y, parameter mappings).
type Layout = (i64, u64, u64, u64, u64, Value);

fn desired_layout(
    dashboard: &DashboardDefinition,
    definitions: &Definitions,
    card_ids: &BTreeMap<String, i64>,
) -> Vec<Layout> {
    dashboard
        .cards
        .iter()
        .filter_map(|placement| {
            let card_id = *card_ids.get(&placement.card)?;
            let filtered = definitions.cards[&placement.card]
                .variables
                .iter()
                .any(|variable| variable == TENANT_PARAMETER);
            let mappings = if filtered {
                json!([{
                    "parameter_id": TENANT_PARAMETER,
                    "card_id": card_id,
                    "target": ["variable", ["template-tag", TENANT_PARAMETER]],
                }])
            } else {
                json!([])
            };
            Some((
                card_id,
                u64::from(placement.row),
                u64::from(placement.col),
                u64::from(placement.size_x),
                u64::from(placement.size_y),
                mappings,
            ))
        })
        .collect()
}

fn stored_layout(dashboard: &Value) -> Vec<(i64, Layout)> {
    dashboard["dashcards"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|dashcard| {
            let mappings: Vec<Value> = dashcard["parameter_mappings"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|mapping| {
                    json!({
                        "parameter_id": mapping["parameter_id"],
                        "card_id": mapping["card_id"],
                        "target": mapping["target"],
                    })
                })
                .collect();
            Some((
                dashcard["id"].as_i64()?,
                (
                    dashcard["card_id"].as_i64()?,
                    dashcard["row"].as_u64()?,
                    dashcard["col"].as_u64()?,
                    dashcard["size_x"].as_u64()?,
                    dashcard["size_y"].as_u64()?,
                    Value::Array(mappings),
                ),
            ))
        })
        .collect()
}

async fn ensure_dashboard(
    client: &MetabaseClient,
    dashboard: &DashboardDefinition,
    existing: Option<i64>,
    collection: i64,
    definitions: &Definitions,
    card_ids: &BTreeMap<String, i64>,
) -> Result<Outcome, MetabaseError> {
    let (id, created) = match existing {
        Some(id) => (id, false),
        None => {
            let body = json!({
                "name": dashboard.name,
                "description": dashboard.description,
                "collection_id": collection,
                "parameters": dashboard_parameters(),
            });
            let answer = client.post("/api/dashboard", &body).await?;
            (
                id_of(client, Method::POST, "/api/dashboard", &answer)?,
                true,
            )
        }
    };
    let path = format!("/api/dashboard/{id}");
    let stored = client.get(&path).await?;
    let desired = desired_layout(dashboard, definitions, card_ids);
    let current = stored_layout(&stored);
    let mut current_layouts: Vec<&Layout> = current.iter().map(|(_, layout)| layout).collect();
    let mut wanted: Vec<&Layout> = desired.iter().collect();
    current_layouts.sort_by_key(|layout| (layout.0, layout.1, layout.2));
    wanted.sort_by_key(|layout| (layout.0, layout.1, layout.2));
    let same = current_layouts == wanted
        && stored["description"] == dashboard.description.as_str()
        && stored["parameters"] == dashboard_parameters();
    let outcome = |change| Outcome {
        kind: "dashboard",
        name: dashboard.name.clone(),
        id,
        change,
    };
    if same {
        return Ok(outcome(if created {
            Change::Created
        } else {
            Change::Unchanged
        }));
    }
    // Dashcards keep their ids when their card stays; new ones get negative ids (Metabase
    // creates them); stored ones left out are removed.
    let mut next_new = -1;
    let dashcards: Vec<Value> = desired
        .iter()
        .map(|(card_id, row, col, size_x, size_y, mappings)| {
            let id = current
                .iter()
                .find(|(_, layout)| layout.0 == *card_id)
                .map_or_else(
                    || {
                        next_new -= 1;
                        next_new + 1
                    },
                    |(id, _)| *id,
                );
            json!({
                "id": id,
                "card_id": card_id,
                "row": row,
                "col": col,
                "size_x": size_x,
                "size_y": size_y,
                "parameter_mappings": mappings,
                "visualization_settings": {},
            })
        })
        .collect();
    let body = json!({
        "description": dashboard.description,
        "parameters": dashboard_parameters(),
        "dashcards": dashcards,
    });
    client.put(&path, &body).await?;
    Ok(outcome(if created {
        Change::Created
    } else {
        Change::Updated
    }))
}
