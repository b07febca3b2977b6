//! The PostgreSQL login role Metabase reads the `analytics` schema as.
//!
//! The role is a member of `caller_analytics_reader` (SELECT on the schema, nothing else) and
//! is mapped in `analytics.readers` to every tenant (`tenant_id` NULL): the shared Metabase
//! instance is the platform operator's. A client's own BI login is mapped to its tenant
//! instead (docs/metabase.md). Row-level security reads the mapping by `session_user`, so
//! Metabase must connect as this role itself, not `SET ROLE` into it.

use sqlx::PgConnection;

use crate::secret::Secret;

/// What [`ensure_reader`] did to the role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    /// The role did not exist and was created.
    Created,
    /// The role existed; its password was set and its grants ensured.
    Updated,
}

/// Why the reader role could not be ensured.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    /// The name is not a plain lowercase identifier (it is also a `session_user` to match).
    #[error("role name `{0}` must be 1-63 characters of a-z, 0-9 and _, starting with a letter")]
    InvalidName(String),
    /// The role exists but can bypass row-level security, so the tenant mapping means nothing.
    #[error("role `{0}` is a superuser or has BYPASSRLS: it would see every tenant's rows")]
    Privileged(String),
    /// A statement failed (not connected as the owner, or PostgreSQL refused).
    #[error("ensure reader role: {0}")]
    Database(#[from] sqlx::Error),
}

/// Creates (or updates) `role` as a login role with `password`, a member of
/// `caller_analytics_reader`, mapped to every tenant. Run as the schema owner; idempotent.
pub async fn ensure_reader(
    conn: &mut PgConnection,
    role: &str,
    password: &Secret<String>,
) -> Result<RoleChange, ReaderError> {
    let valid = role.len() <= 63
        && role.starts_with(|c: char| c.is_ascii_lowercase())
        && role
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(ReaderError::InvalidName(role.to_owned()));
    }
    let existing: Option<(bool, bool)> =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1")
            .bind(role)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some((superuser, bypass)) = existing
        && (superuser || bypass)
    {
        return Err(ReaderError::Privileged(role.to_owned()));
    }
    let verb = if existing.is_some() {
        "ALTER"
    } else {
        "CREATE"
    };
    // New roles are NOSUPERUSER NOBYPASSRLS by default (saying so needs superuser rights,
    // which the owner lacks); an existing one was checked above.
    // NOTE: CREATE/ALTER ROLE take no bind parameters. `format` quotes the name (%I) and the
    // password (%L) server-side, so the statement is built from bound values, never by
    // splicing text here.
    let statement: String = sqlx::query_scalar(&format!(
        "SELECT format('{verb} ROLE %I LOGIN PASSWORD %L', $1::text, $2::text)"
    ))
    .bind(role)
    .bind(password.expose())
    .fetch_one(&mut *conn)
    .await?;
    sqlx::raw_sql(&statement).execute(&mut *conn).await?;
    let grant: String =
        sqlx::query_scalar("SELECT format('GRANT caller_analytics_reader TO %I', $1::text)")
            .bind(role)
            .fetch_one(&mut *conn)
            .await?;
    sqlx::raw_sql(&grant).execute(&mut *conn).await?;
    sqlx::query(
        "INSERT INTO analytics.readers (role_name, tenant_id) VALUES ($1, NULL)
         ON CONFLICT DO NOTHING",
    )
    .bind(role)
    .execute(&mut *conn)
    .await?;
    Ok(if existing.is_some() {
        RoleChange::Updated
    } else {
        RoleChange::Created
    })
}
