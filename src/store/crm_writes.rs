//! crm_sync's write ledger (`crm_writes`): one row per (fact, action), so a replayed fact
//! performs each CRM write at most once.
//!
//! Protocol per action: [`begin`] records `started` (committed) before the CRM is called;
//! [`finish`] records `done` with the result after. A fact replayed after a crash between the
//! two finds `started` and the caller checks the CRM before writing again.

use serde_json::Value;

use crate::ids::TenantId;
use crate::store::Store;

/// Where an action stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// Never started: perform it.
    New,
    /// Started before and never confirmed: the CRM may or may not have it.
    Started,
    /// Done, with the stored result.
    Done(Option<Value>),
}

/// Records that `action` of `fact` is about to be performed, and returns where it stood.
///
/// # Errors
///
/// The database failed.
pub async fn begin(
    store: &Store,
    tenant: TenantId,
    fact: &str,
    action: &str,
) -> Result<Progress, sqlx::Error> {
    let mut tx = store.begin_tenant(tenant).await?;
    let before: Option<(String, Option<Value>)> = sqlx::query_as(
        "SELECT state, result FROM crm_writes \
         WHERE tenant_id = $1 AND fact_key = $2 AND action = $3 FOR UPDATE",
    )
    .bind(tenant.as_uuid())
    .bind(fact)
    .bind(action)
    .fetch_optional(&mut *tx)
    .await?;
    let progress = match before {
        Some((state, result)) if state == "done" => Progress::Done(result),
        Some(_) => {
            sqlx::query(
                "UPDATE crm_writes SET attempts = attempts + 1 \
                 WHERE tenant_id = $1 AND fact_key = $2 AND action = $3",
            )
            .bind(tenant.as_uuid())
            .bind(fact)
            .bind(action)
            .execute(&mut *tx)
            .await?;
            Progress::Started
        }
        None => {
            sqlx::query(
                "INSERT INTO crm_writes (tenant_id, fact_key, action) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(tenant.as_uuid())
            .bind(fact)
            .bind(action)
            .execute(&mut *tx)
            .await?;
            Progress::New
        }
    };
    tx.commit().await?;
    Ok(progress)
}

/// Records that `action` of `fact` is done, with what the CRM answered.
///
/// # Errors
///
/// The database failed.
pub async fn finish(
    store: &Store,
    tenant: TenantId,
    fact: &str,
    action: &str,
    result: Option<Value>,
) -> Result<(), sqlx::Error> {
    let mut tx = store.begin_tenant(tenant).await?;
    sqlx::query(
        "UPDATE crm_writes SET state = 'done', result = $4 \
         WHERE tenant_id = $1 AND fact_key = $2 AND action = $3",
    )
    .bind(tenant.as_uuid())
    .bind(fact)
    .bind(action)
    .bind(result)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
