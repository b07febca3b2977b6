//! Metabase: the version-controlled cards and dashboards over the `analytics` schema, and
//! `caller metabase provision`, which creates them through Metabase's REST API.
//!
//! - `metabase/dashboards.yaml` and `metabase/cards/<key>.sql` are the source of truth;
//!   [`Definitions::load`] reads and checks them (every dashboard card exists, every layout
//!   fits the 24-column grid, every SQL variable is one Metabase can fill).
//! - [`api`]: the REST client (session login, typed errors, the token never leaves it).
//! - [`provision`]: finds what an earlier run made (by name) and creates or updates only what
//!   differs, so a second run writes nothing.
//! - [`reader`]: the PostgreSQL login role Metabase connects as (a member of
//!   `caller_analytics_reader`, mapped to every tenant in `analytics.readers`).
//! - [`sql`]: Metabase's native-query variables (`{{tenant}}`, optional `[[…]]` clauses), so
//!   tests run each card the way Metabase would.
//! - `sim` (feature `test-util`): a recorded-contract simulator of the endpoints we call.

pub mod api;
pub mod provision;
pub mod reader;
#[cfg(any(test, feature = "test-util"))]
pub mod sim;
pub mod sql;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// The Metabase version whose API shapes we follow (compose.yaml's `METABASE_TAG` default).
pub const METABASE_VERSION: &str = "v0.50.36";

/// Width of Metabase's dashboard grid.
pub const GRID_COLUMNS: u32 = 24;

/// One native SQL question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardDefinition {
    /// Key in `dashboards.yaml`, and the SQL file's stem.
    pub key: String,
    /// Name shown in Metabase; how provisioning finds the card again.
    pub name: String,
    /// Metabase visualization: `table`, `bar`, `line`, `scalar`, …
    pub display: String,
    /// The SQL, with Metabase variables.
    pub sql: String,
    /// The SQL's variables, in order of first use (each becomes a text template tag).
    pub variables: Vec<String>,
}

impl CardDefinition {
    /// Returns the card's description: the SQL's leading `--` comment, joined into one line.
    pub fn description(&self) -> String {
        let lines: Vec<&str> = self
            .sql
            .lines()
            .map_while(|line| line.trim_start().strip_prefix("--"))
            .map(str::trim)
            .collect();
        lines.join(" ")
    }
}

/// A card placed on a dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// Key of the card.
    pub card: String,
    /// Grid row.
    pub row: u32,
    /// Grid column.
    pub col: u32,
    /// Width in grid columns.
    pub size_x: u32,
    /// Height in grid rows.
    pub size_y: u32,
}

/// A dashboard and its cards.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardDefinition {
    /// Name shown in Metabase; how provisioning finds the dashboard again.
    pub name: String,
    /// Shown under the name.
    pub description: String,
    /// The cards and where they sit.
    pub cards: Vec<Placement>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CardEntry {
    name: String,
    display: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DashboardsFile {
    collection: String,
    database: String,
    cards: BTreeMap<String, CardEntry>,
    dashboards: Vec<DashboardDefinition>,
}

/// Everything `metabase/` defines.
#[derive(Debug, Clone)]
pub struct Definitions {
    /// The collection every card and dashboard goes into.
    pub collection: String,
    /// The name of the Metabase database (data source) for the `caller` database.
    pub database: String,
    /// Every card, by key.
    pub cards: BTreeMap<String, CardDefinition>,
    /// Every dashboard, in file order.
    pub dashboards: Vec<DashboardDefinition>,
}

/// Why `metabase/` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionsError {
    /// A file is missing or unreadable.
    #[error("read `{path}`: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// `dashboards.yaml` is not valid.
    #[error("parse `{path}`: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The cause.
        source: serde_yaml::Error,
    },
    /// The definitions contradict each other.
    #[error("`{path}`: {problem}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
}

impl Definitions {
    /// Reads `dir/dashboards.yaml` and every card's `dir/cards/<key>.sql`, and checks them.
    pub fn load(dir: &Path) -> Result<Self, DefinitionsError> {
        let index = dir.join("dashboards.yaml");
        let index_name = index.display().to_string();
        let text = read(&index)?;
        let file: DashboardsFile =
            serde_yaml::from_str(&text).map_err(|source| DefinitionsError::Parse {
                path: index_name.clone(),
                source,
            })?;
        let invalid = |problem: String| DefinitionsError::Invalid {
            path: index_name.clone(),
            problem,
        };
        let mut cards = BTreeMap::new();
        for (key, entry) in file.cards {
            let path = dir.join("cards").join(format!("{key}.sql"));
            let sql = read(&path)?;
            let variables = sql::variables(&sql).map_err(|error| DefinitionsError::Invalid {
                path: path.display().to_string(),
                problem: error.to_string(),
            })?;
            cards.insert(
                key.clone(),
                CardDefinition {
                    key,
                    name: entry.name,
                    display: entry.display,
                    sql,
                    variables,
                },
            );
        }
        let mut names = std::collections::BTreeSet::new();
        for card in cards.values() {
            if !names.insert(card.name.as_str()) {
                return Err(invalid(format!("two cards are named `{}`", card.name)));
            }
        }
        for dashboard in &file.dashboards {
            for placement in &dashboard.cards {
                if !cards.contains_key(&placement.card) {
                    return Err(invalid(format!(
                        "dashboard `{}` places unknown card `{}`",
                        dashboard.name, placement.card
                    )));
                }
                if placement.size_x == 0
                    || placement.size_y == 0
                    || placement.col + placement.size_x > GRID_COLUMNS
                {
                    return Err(invalid(format!(
                        "dashboard `{}`: card `{}` does not fit the {GRID_COLUMNS}-column grid",
                        dashboard.name, placement.card
                    )));
                }
            }
        }
        Ok(Self {
            collection: file.collection,
            database: file.database,
            cards,
            dashboards: file.dashboards,
        })
    }
}

fn read(path: &Path) -> Result<String, DefinitionsError> {
    std::fs::read_to_string(path).map_err(|source| DefinitionsError::Read {
        path: path.display().to_string(),
        source,
    })
}
