//! `call_blocklist`: a tenant's do-not-call list and the people who opted out.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;

use crate::ids::{PhoneNumber, TenantId};

/// Which list a number is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BlockList {
    /// The tenant's do-not-call list (its own, or a registry it imported).
    DoNotCall,
    /// The person asked not to be called again.
    OptOut,
}

impl BlockList {
    /// Returns the stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::DoNotCall => "do_not_call",
            Self::OptOut => "opt_out",
        }
    }

    fn parse(text: &str) -> Self {
        if text == "opt_out" {
            Self::OptOut
        } else {
            Self::DoNotCall
        }
    }
}

/// One blocked number.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct BlockedNumber {
    /// The number (E.164).
    #[schema(value_type = String)]
    pub phone: PhoneNumber,
    /// Which list.
    pub list: BlockList,
    /// Why, as the tenant recorded it.
    pub reason: Option<String>,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// Returns the lists `phone` is on (empty when it may be called).
pub async fn lists_of(
    conn: &mut PgConnection,
    tenant: TenantId,
    phone: &PhoneNumber,
) -> Result<Vec<BlockList>, sqlx::Error> {
    let rows = sqlx::query_scalar!(
        "SELECT list FROM call_blocklist WHERE tenant_id = $1 AND phone = $2 ORDER BY list",
        tenant.as_uuid(),
        phone.as_str(),
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(|list| BlockList::parse(list)).collect())
}

/// Adds `phone` to `list` (again: updates the reason).
pub async fn add(
    conn: &mut PgConnection,
    tenant: TenantId,
    phone: &PhoneNumber,
    list: BlockList,
    reason: Option<&str>,
) -> Result<BlockedNumber, sqlx::Error> {
    let row = sqlx::query!(
        "INSERT INTO call_blocklist (tenant_id, phone, list, reason) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id, phone, list) DO UPDATE SET reason = EXCLUDED.reason
         RETURNING created_at",
        tenant.as_uuid(),
        phone.as_str(),
        list.as_str(),
        reason,
    )
    .fetch_one(&mut *conn)
    .await?;
    // A number on a list is not called again: its retries and follow-ups go at once.
    super::scheduled_jobs::cancel_for_lead(
        conn,
        tenant,
        Some(phone),
        None,
        &format!("number added to the {} list", list.as_str()),
    )
    .await?;
    Ok(BlockedNumber {
        phone: phone.clone(),
        list,
        reason: reason.map(str::to_owned),
        created_at: row.created_at,
    })
}

/// Removes `phone` from `list`; returns false when it was not on it.
pub async fn remove(
    conn: &mut PgConnection,
    tenant: TenantId,
    phone: &PhoneNumber,
    list: BlockList,
) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query!(
        "DELETE FROM call_blocklist WHERE tenant_id = $1 AND phone = $2 AND list = $3",
        tenant.as_uuid(),
        phone.as_str(),
        list.as_str(),
    )
    .execute(conn)
    .await?;
    Ok(deleted.rows_affected() == 1)
}

/// Lists up to `limit` of a tenant's blocked numbers, newest first.
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    limit: i64,
) -> Result<Vec<BlockedNumber>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT phone, list, reason, created_at FROM call_blocklist WHERE tenant_id = $1
         ORDER BY created_at DESC, phone LIMIT $2",
        tenant.as_uuid(),
        limit,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            Some(BlockedNumber {
                phone: PhoneNumber::parse(&row.phone).ok()?,
                list: BlockList::parse(&row.list),
                reason: row.reason,
                created_at: row.created_at,
            })
        })
        .collect())
}
