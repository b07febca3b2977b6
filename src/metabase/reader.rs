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
    let mut transaction = sqlx::Connection::begin(&mut *conn).await?;
    let existing: Option<(bool, bool)> =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1")
            .bind(role)
            .fetch_optional(&mut *transaction)
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
    // NOTE: CREATE/ALTER ROLE take no bind parameters, and a statement's text is what sqlx
    // (slow-statement warnings) and PostgreSQL (`log_statement = ddl`) log. So the name and
    // password travel as bound values into transaction-local settings, and the DO block
    // quotes them server-side (%I, %L): no statement text ever holds the password.
    sqlx::query(
        "SELECT set_config('caller.reader_role', $1, true),
                set_config('caller.reader_password', $2, true)",
    )
    .bind(role)
    .bind(password.expose())
    .execute(&mut *transaction)
    .await?;
    // New roles are NOSUPERUSER NOBYPASSRLS by default (saying so needs superuser rights,
    // which the owner lacks); an existing one was checked above.
    sqlx::raw_sql(&format!(
        "DO $$ BEGIN
             EXECUTE format('{verb} ROLE %I LOGIN PASSWORD %L',
                            current_setting('caller.reader_role'),
                            current_setting('caller.reader_password'));
             EXECUTE format('GRANT caller_analytics_reader TO %I',
                            current_setting('caller.reader_role'));
         END $$"
    ))
    .execute(&mut *transaction)
    .await?;
    sqlx::query(
        "INSERT INTO analytics.readers (role_name, tenant_id) VALUES ($1, NULL)
         ON CONFLICT DO NOTHING",
    )
    .bind(role)
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok(if existing.is_some() {
        RoleChange::Updated
    } else {
        RoleChange::Created
    })
}
