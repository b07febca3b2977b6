//! Master key rotation: re-seals every credential under the keyring's active key.
//!
//! Work goes in batches, one platform transaction each: lock up to `batch` rows sealed under
//! another key (`FOR UPDATE SKIP LOCKED`, so several rotators share the work), open each with
//! its old key, seal it under the active key, write it back only if it is still under the old
//! key (compare-and-set), commit.
//!
//! Invariants:
//! - Resumable and safe to interrupt: a committed batch is fully rotated; a batch that did not
//!   commit is rolled back and its rows keep their old key. Running again picks up the rest.
//! - Old keys must stay in the keyring until [`RotationReport::remaining`] is 0.
//! - A record that does not open is never skipped silently: it is reported as a
//!   [`RotationFailure`] (kind, tenant and reason, never the value) and left on its old key.

use sqlx::PgConnection;

use crate::crypto::{self, KeyId, Keyring};
use crate::ids::TenantId;
use crate::store::Store;
use crate::store::credentials::{self, SealedCredential};

/// Most rows one batch may lock.
pub const MAX_BATCH: i64 = 10_000;

/// What a rotation run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RotationReport {
    /// Records re-sealed under the active key by this run.
    pub rotated: u64,
    /// Batches committed.
    pub batches: u64,
    /// Records still sealed under another key when the run stopped (failures included).
    pub remaining: i64,
    /// Records that could not be re-sealed; each is still on its old key.
    pub failures: Vec<RotationFailure>,
}

/// A record the rotation could not re-seal. Holds no plaintext and no key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationFailure {
    /// Row id in `client_credentials`.
    pub credential_id: uuid::Uuid,
    /// Owner of the credential.
    pub tenant_id: TenantId,
    /// Credential kind, e.g. `twilio.auth_token`.
    pub kind: String,
    /// The key id the record is (still) sealed under.
    pub key_id: KeyId,
    /// Why it could not be opened.
    pub reason: String,
}

/// Why a rotation run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// `batch` is outside `1..=MAX_BATCH`.
    #[error("batch size must be between 1 and {MAX_BATCH}, not {0}")]
    InvalidBatch(i64),
    /// The database failed; batches committed before stay rotated, the current one rolled back.
    #[error("database failed after {rotated} records were rotated: {source}")]
    Database {
        /// Records rotated by committed batches before the failure.
        rotated: u64,
        /// The database error.
        source: sqlx::Error,
    },
}

/// Re-seals every credential sealed under another key than the keyring's active one.
///
/// Runs batches of at most `batch` rows until none remains, or until `max_batches` batches
/// have committed (`None`: no limit). The report's `remaining` is counted after the last
/// batch; it includes the failures.
pub async fn rotate_master_key(
    store: &Store,
    keyring: &Keyring,
    batch: i64,
    max_batches: Option<u64>,
) -> Result<RotationReport, RotationError> {
    if !(1..=MAX_BATCH).contains(&batch) {
        return Err(RotationError::InvalidBatch(batch));
    }
    let active = keyring.active_id();
    let mut report = RotationReport::default();
    // Rows that failed to open: excluded from later batches so they are reported once.
    let mut failed_ids: Vec<uuid::Uuid> = Vec::new();
    loop {
        if max_batches.is_some_and(|limit| report.batches >= limit) {
            break;
        }
        let database = |source| RotationError::Database {
            rotated: report.rotated,
            source,
        };
        let mut transaction = store.begin_platform().await.map_err(database)?;
        let rows =
            credentials::sealed_under_other_keys(&mut transaction, active, &failed_ids, batch)
                .await
                .map_err(database)?;
        if rows.is_empty() {
            transaction.rollback().await.map_err(database)?;
            break;
        }
        let outcome = reseal_batch(&mut transaction, keyring, &rows)
            .await
            .map_err(database)?;
        transaction.commit().await.map_err(database)?;
        // Counted only once committed: an uncommitted batch rotated nothing.
        report.batches += 1;
        report.rotated += outcome.rotated;
        tracing::info!(
            batch = report.batches,
            rotated = outcome.rotated,
            failed = outcome.failures.len(),
            active_key = %active,
            "master key rotation batch committed"
        );
        for failure in outcome.failures {
            failed_ids.push(failure.credential_id);
            report.failures.push(failure);
        }
    }
    let database = |source| RotationError::Database {
        rotated: report.rotated,
        source,
    };
    let mut transaction = store.begin_platform().await.map_err(database)?;
    let remaining = credentials::count_under_other_keys(&mut transaction, active)
        .await
        .map_err(database)?;
    transaction.rollback().await.map_err(database)?;
    report.remaining = remaining;
    Ok(report)
}

/// What one batch did inside its (not yet committed) transaction.
struct BatchOutcome {
    rotated: u64,
    failures: Vec<RotationFailure>,
}

/// Re-seals the locked `rows` under the active key, collecting those that do not open.
async fn reseal_batch(
    conn: &mut PgConnection,
    keyring: &Keyring,
    rows: &[SealedCredential],
) -> Result<BatchOutcome, sqlx::Error> {
    let mut outcome = BatchOutcome {
        rotated: 0,
        failures: Vec::new(),
    };
    for row in rows {
        let plaintext = match crypto::open(keyring, row.tenant_id, &row.kind, &row.sealed) {
            Ok(plaintext) => plaintext,
            Err(error) => {
                outcome.failures.push(failure(row, &error.to_string()));
                continue;
            }
        };
        let resealed = crypto::seal(keyring, row.tenant_id, &row.kind, &plaintext);
        // The row is locked by this transaction, so the compare-and-set fails only if that
        // guarantee is broken. Then the row is reported, not clobbered, and not retried in
        // this run (which would loop).
        if credentials::reseal(conn, row.id, &row.sealed.key_id, &resealed).await? {
            outcome.rotated += 1;
        } else {
            outcome
                .failures
                .push(failure(row, "changed during rotation: run again"));
        }
    }
    Ok(outcome)
}

/// Describes a record left on its old key, and logs it (kind and tenant, never the value).
fn failure(row: &SealedCredential, reason: &str) -> RotationFailure {
    tracing::warn!(
        tenant_id = %row.tenant_id,
        kind = %row.kind,
        key_id = %row.sealed.key_id,
        reason,
        "credential not rotated: left on its old key"
    );
    RotationFailure {
        credential_id: row.id,
        tenant_id: row.tenant_id,
        kind: row.kind.clone(),
        key_id: row.sealed.key_id.clone(),
        reason: reason.to_owned(),
    }
}
