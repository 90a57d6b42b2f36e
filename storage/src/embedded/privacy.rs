//! The privacy centre's tables on redb. They are small (a row per user who used the privacy
//! centre, a row per request), so the sweep scans them instead of indexing their expiry.

use async_trait::async_trait;
use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{e, from_json, open, open_read, to_json};
use crate::privacy::ERASED_USER;
use crate::{
    EmbeddedStore, FlagChange, PreparedExport, PrivacyFlags, PrivacyRepo, PrivacyRequest,
    Retention, StorageError, StoredRow, Timestamp,
};

/// (user id, request id) → [`PrivacyRequest`].
pub(super) const PRIVACY_REQUESTS: TableDefinition<(u64, u64), &[u8]> =
    TableDefinition::new("privacy_requests");
/// user id → [`PrivacyFlags`].
pub(super) const PRIVACY_FLAGS: TableDefinition<u64, &[u8]> = TableDefinition::new("privacy_flags");
/// user id → [`PreparedExport`].
pub(super) const PRIVACY_EXPORTS: TableDefinition<u64, &[u8]> =
    TableDefinition::new("privacy_exports");
/// (at ms, user id) → (): the changes of users' flags of the last
/// [`FLAG_CHANGES_KEPT`](crate::privacy::FLAG_CHANGES_KEPT).
pub(super) const PRIVACY_FLAG_CHANGES: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("privacy_flag_changes");
/// session id (hash) → until (ms): browsers told to clear site data on their next visit.
pub(super) const BROWSER_CLEARINGS: TableDefinition<&str, u64> =
    TableDefinition::new("browser_clearings");

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StorageError> {
    open(txn, PRIVACY_REQUESTS)?;
    open(txn, PRIVACY_FLAGS)?;
    open(txn, PRIVACY_EXPORTS)?;
    open(txn, PRIVACY_FLAG_CHANGES)?;
    open(txn, BROWSER_CLEARINGS)?;
    Ok(())
}

/// When the user's flags changed, of the changes still listed (their data export).
pub(super) fn flag_changes_of(
    txn: &redb::ReadTransaction,
    user_id: u64,
) -> Result<Vec<Timestamp>, StorageError> {
    let mut out = Vec::new();
    for item in open_read(txn, PRIVACY_FLAG_CHANGES)?.iter().map_err(e)? {
        let (at, user) = item.map_err(e)?.0.value();
        if user == user_id {
            out.push(Timestamp(at));
        }
    }
    Ok(out)
}

fn requests_of(
    table: &impl ReadableTable<(u64, u64), &'static [u8]>,
    user_id: u64,
) -> Result<Vec<PrivacyRequest>, StorageError> {
    let mut out = Vec::new();
    for item in table.range((user_id, 0)..=(user_id, u64::MAX)).map_err(e)? {
        out.push(from_json("privacy_requests", item.map_err(e)?.1.value())?);
    }
    Ok(out)
}

/// The user's requests and flags, for their data export.
pub(super) fn export_of(
    txn: &redb::ReadTransaction,
    user_id: u64,
) -> Result<(Vec<PrivacyRequest>, Option<PrivacyFlags>), StorageError> {
    let requests = requests_of(&open_read(txn, PRIVACY_REQUESTS)?, user_id)?;
    let flags = open_read(txn, PRIVACY_FLAGS)?
        .get(user_id)
        .map_err(e)?
        .map(|v| from_json("privacy_flags", v.value()))
        .transpose()?;
    Ok((requests, flags))
}

/// Erasure of a user: flags and export removed, requests kept under [`ERASED_USER`].
/// Returns the rows touched.
pub(super) fn erase_user(txn: &WriteTransaction, user_id: u64) -> Result<u64, StorageError> {
    let mut touched = 0;
    touched += u64::from(
        open(txn, PRIVACY_FLAGS)?
            .remove(user_id)
            .map_err(e)?
            .is_some(),
    );
    touched += u64::from(
        open(txn, PRIVACY_EXPORTS)?
            .remove(user_id)
            .map_err(e)?
            .is_some(),
    );
    // A scan: the table holds an hour of changes.
    open(txn, PRIVACY_FLAG_CHANGES)?
        .retain(|(_, user), ()| {
            touched += u64::from(user == user_id);
            user != user_id
        })
        .map_err(e)?;
    if user_id == ERASED_USER {
        return Ok(touched);
    }
    let mut table = open(txn, PRIVACY_REQUESTS)?;
    let requests = requests_of(&table, user_id)?;
    for request in requests {
        table.remove((user_id, request.request_id)).map_err(e)?;
        let anonymous = PrivacyRequest {
            user_id: ERASED_USER,
            ..request
        };
        table
            .insert(
                (ERASED_USER, anonymous.request_id),
                to_json(&anonymous).as_slice(),
            )
            .map_err(e)?;
        touched += 1;
    }
    Ok(touched)
}

/// Removes expired exports and clearing marks, and requests past their retention.
pub(super) fn sweep(
    txn: &WriteTransaction,
    now: Timestamp,
    retention: &Retention,
) -> Result<u64, StorageError> {
    let mut removed = 0;
    open(txn, PRIVACY_EXPORTS)?
        .retain(|_, value| {
            let keep = serde_json::from_slice::<PreparedExport>(value)
                .is_ok_and(|export| export.expires_at > now);
            removed += u64::from(!keep);
            keep
        })
        .map_err(e)?;
    open(txn, BROWSER_CLEARINGS)?
        .retain(|_, until| {
            let keep = until > now.0;
            removed += u64::from(!keep);
            keep
        })
        .map_err(e)?;
    open(txn, PRIVACY_FLAG_CHANGES)?
        .retain(|(at, _), ()| {
            let keep = Timestamp(at).saturating_add(crate::privacy::FLAG_CHANGES_KEPT) > now;
            removed += u64::from(!keep);
            keep
        })
        .map_err(e)?;
    open(txn, PRIVACY_REQUESTS)?
        .retain(|_, value| {
            let keep = serde_json::from_slice::<PrivacyRequest>(value)
                .is_ok_and(|r| r.requested_at.saturating_add(retention.privacy_requests) > now);
            removed += u64::from(!keep);
            keep
        })
        .map_err(e)?;
    Ok(removed)
}

/// The tables' rows as text, for [`DataRights::dump_rows`](crate::DataRights::dump_rows).
pub(super) fn dump(
    txn: &redb::ReadTransaction,
    out: &mut Vec<StoredRow>,
) -> Result<(), StorageError> {
    let mut push = |table: &str, text: String| {
        out.push(StoredRow {
            table: table.to_owned(),
            text,
        })
    };
    for item in open_read(txn, PRIVACY_REQUESTS)?.iter().map_err(e)? {
        let (key, value) = item.map_err(e)?;
        let text = String::from_utf8_lossy(value.value()).into_owned();
        push("privacy_requests", format!("{:?} {text}", key.value()));
    }
    for def in [PRIVACY_FLAGS, PRIVACY_EXPORTS] {
        for item in open_read(txn, def)?.iter().map_err(e)? {
            let (key, value) = item.map_err(e)?;
            let text = String::from_utf8_lossy(value.value()).into_owned();
            push(
                redb::TableHandle::name(&def),
                format!("{} {text}", key.value()),
            );
        }
    }
    for item in open_read(txn, PRIVACY_FLAG_CHANGES)?.iter().map_err(e)? {
        let (at, user) = item.map_err(e)?.0.value();
        push("privacy_flag_changes", format!("{user} {{\"at\":{at}}}"));
    }
    for item in open_read(txn, BROWSER_CLEARINGS)?.iter().map_err(e)? {
        let (key, value) = item.map_err(e)?;
        push(
            "browser_clearings",
            format!("{} {}", key.value(), value.value()),
        );
    }
    Ok(())
}

#[async_trait]
impl PrivacyRepo for EmbeddedStore {
    async fn put_privacy_request(&self, request: &PrivacyRequest) -> Result<(), StorageError> {
        let request = request.clone();
        self.write(move |txn, _| {
            open(txn, PRIVACY_REQUESTS)?
                .insert(
                    (request.user_id, request.request_id),
                    to_json(&request).as_slice(),
                )
                .map_err(e)?;
            Ok(())
        })
        .await
    }

    async fn privacy_requests_of(&self, user_id: u64) -> Result<Vec<PrivacyRequest>, StorageError> {
        self.read(move |txn, _| {
            let mut out = requests_of(&open_read(txn, PRIVACY_REQUESTS)?, user_id)?;
            out.sort_by_key(|r| std::cmp::Reverse((r.requested_at, r.request_id)));
            Ok(out)
        })
        .await
    }

    async fn privacy_requests(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<PrivacyRequest>, StorageError> {
        self.read(move |txn, _| {
            let mut out = Vec::new();
            for item in open_read(txn, PRIVACY_REQUESTS)?.iter().map_err(e)? {
                let request: PrivacyRequest =
                    from_json("privacy_requests", item.map_err(e)?.1.value())?;
                if request.requested_at >= from && request.requested_at < to {
                    out.push(request);
                }
            }
            out.sort_by_key(|r| (r.requested_at, r.request_id));
            Ok(out)
        })
        .await
    }

    async fn privacy_flags(&self, user_id: u64) -> Result<PrivacyFlags, StorageError> {
        self.read(move |txn, _| {
            let table = open_read(txn, PRIVACY_FLAGS)?;
            let row = table.get(user_id).map_err(e)?;
            Ok(row
                .map(|v| from_json("privacy_flags", v.value()))
                .transpose()?
                .unwrap_or_default())
        })
        .await
    }

    async fn set_privacy_flags(
        &self,
        user_id: u64,
        flags: &PrivacyFlags,
    ) -> Result<(), StorageError> {
        let flags = *flags;
        self.write(move |txn, _| {
            open(txn, PRIVACY_FLAGS)?
                .insert(user_id, to_json(&flags).as_slice())
                .map_err(e)?;
            open(txn, PRIVACY_FLAG_CHANGES)?
                .insert((Timestamp::now().0, user_id), ())
                .map_err(e)?;
            Ok(())
        })
        .await
    }

    async fn privacy_flag_changes(
        &self,
        since: Timestamp,
    ) -> Result<Vec<FlagChange>, StorageError> {
        self.read(move |txn, _| {
            let mut out = Vec::new();
            for item in open_read(txn, PRIVACY_FLAG_CHANGES)?
                .range((since.0, 0)..)
                .map_err(e)?
            {
                let (at, user_id) = item.map_err(e)?.0.value();
                out.push(FlagChange {
                    at: Timestamp(at),
                    user_id,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn put_export(&self, export: &PreparedExport) -> Result<(), StorageError> {
        let export = export.clone();
        self.write(move |txn, _| {
            open(txn, PRIVACY_EXPORTS)?
                .insert(export.user_id, to_json(&export).as_slice())
                .map_err(e)?;
            Ok(())
        })
        .await
    }

    async fn export_status(
        &self,
        user_id: u64,
        now: Timestamp,
    ) -> Result<Option<(Timestamp, Timestamp)>, StorageError> {
        self.read(move |txn, _| {
            let table = open_read(txn, PRIVACY_EXPORTS)?;
            let row = table.get(user_id).map_err(e)?;
            let export: Option<PreparedExport> = row
                .map(|v| from_json("privacy_exports", v.value()))
                .transpose()?;
            Ok(export
                .filter(|x| x.expires_at > now)
                .map(|x| (x.created_at, x.expires_at)))
        })
        .await
    }

    async fn take_export(
        &self,
        user_id: u64,
        now: Timestamp,
    ) -> Result<Option<PreparedExport>, StorageError> {
        self.write(move |txn, _| {
            let mut table = open(txn, PRIVACY_EXPORTS)?;
            let removed = table.remove(user_id).map_err(e)?;
            let export: Option<PreparedExport> = removed
                .map(|v| from_json("privacy_exports", v.value()))
                .transpose()?;
            Ok(export.filter(|x| x.expires_at > now))
        })
        .await
    }

    async fn mark_browsers_for_clearing(
        &self,
        session_ids: &[String],
        until: Timestamp,
    ) -> Result<(), StorageError> {
        let ids = session_ids.to_vec();
        self.write(move |txn, _| {
            let mut table = open(txn, BROWSER_CLEARINGS)?;
            for id in &ids {
                table.insert(id.as_str(), until.0).map_err(e)?;
            }
            Ok(())
        })
        .await
    }

    async fn take_browser_clearing(&self, session_id: &str) -> Result<bool, StorageError> {
        let id = session_id.to_owned();
        // A read first: nearly every stale cookie is not a marked one, and a read costs no
        // fsync.
        let marked = self
            .read({
                let id = id.clone();
                move |txn, _| {
                    Ok(open_read(txn, BROWSER_CLEARINGS)?
                        .get(id.as_str())
                        .map_err(e)?
                        .is_some())
                }
            })
            .await?;
        if !marked {
            return Ok(false);
        }
        self.write(move |txn, _| {
            Ok(open(txn, BROWSER_CLEARINGS)?
                .remove(id.as_str())
                .map_err(e)?
                .is_some())
        })
        .await
    }
}
