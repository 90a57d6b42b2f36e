//! The privacy centre's tables on ScyllaDB: JSON documents with TTLs (requests after the
//! log's retention, exports at the end of their download window); the single download of
//! an export and the single use of a clearing mark are LWTs.

use async_trait::async_trait;
use futures_util::TryStreamExt;

use super::records::{doc, parse};
use super::{ScyllaStore, db_id, rust_id, ttl};
use crate::privacy::ERASED_USER;
use crate::{
    FlagChange, PreparedExport, PrivacyFlags, PrivacyRepo, PrivacyRequest, StorageError, StoredRow,
    Timestamp,
};

impl ScyllaStore {
    /// The user's requests, as stored.
    async fn stored_requests_of(&self, user_id: u64) -> Result<Vec<PrivacyRequest>, StorageError> {
        self.docs(
            "SELECT doc FROM {ks}.privacy_requests WHERE user_id = ?",
            "privacy_requests",
            (db_id(user_id),),
        )
        .await
    }

    async fn write_request(&self, request: &PrivacyRequest) -> Result<(), StorageError> {
        let expires = request
            .requested_at
            .saturating_add(self.retention().privacy_requests);
        let Some(secs) = ttl(expires) else {
            return Ok(());
        };
        self.execute(
            "INSERT INTO {ks}.privacy_requests (user_id, request_id, doc) VALUES (?, ?, ?) \
             USING TTL ?",
            true,
            (
                db_id(request.user_id),
                db_id(request.request_id),
                doc(request),
                secs,
            ),
        )
        .await?;
        Ok(())
    }

    /// The user's requests and flags, for their data export.
    pub(super) async fn privacy_export_of(
        &self,
        user_id: u64,
    ) -> Result<(Vec<PrivacyRequest>, Option<PrivacyFlags>), StorageError> {
        let requests = self.stored_requests_of(user_id).await?;
        let flags = self
            .one_doc(
                "SELECT doc FROM {ks}.privacy_flags WHERE user_id = ?",
                "privacy_flags",
                (db_id(user_id),),
            )
            .await?;
        Ok((requests, flags))
    }

    /// When the user's flags changed, of the changes still listed (their data export).
    pub(super) async fn flag_changes_of(
        &self,
        user_id: u64,
    ) -> Result<Vec<Timestamp>, StorageError> {
        Ok(self
            .privacy_flag_changes(Timestamp(0))
            .await?
            .into_iter()
            .filter(|change| change.user_id == user_id)
            .map(|change| change.at)
            .collect())
    }

    /// Erasure of a user: flags and export removed, requests re-keyed under
    /// [`ERASED_USER`] (written before the user's partition is removed, so an interrupted
    /// erasure loses no request). Returns the rows touched.
    pub(super) async fn erase_privacy_of(&self, user_id: u64) -> Result<u64, StorageError> {
        let mut touched = 0;
        if user_id != ERASED_USER {
            for request in self.stored_requests_of(user_id).await? {
                self.write_request(&PrivacyRequest {
                    user_id: ERASED_USER,
                    ..request
                })
                .await?;
                touched += 1;
            }
            self.execute(
                "DELETE FROM {ks}.privacy_requests WHERE user_id = ?",
                true,
                (db_id(user_id),),
            )
            .await?;
        }
        // The user's changes: read from the one small partition, deleted row by row.
        for at in self.flag_changes_of(user_id).await? {
            self.execute(
                "DELETE FROM {ks}.privacy_flag_changes WHERE bucket = 0 AND at = ? AND user_id = ?",
                true,
                (db_id(at.0), db_id(user_id)),
            )
            .await?;
            touched += 1;
        }
        self.execute(
            "DELETE FROM {ks}.privacy_flags WHERE user_id = ?",
            true,
            (db_id(user_id),),
        )
        .await?;
        self.execute(
            "DELETE FROM {ks}.privacy_exports WHERE user_id = ?",
            true,
            (db_id(user_id),),
        )
        .await?;
        Ok(touched + 2)
    }

    /// The tables' rows as text, for `dump_rows`.
    pub(super) async fn dump_privacy(&self, out: &mut Vec<StoredRow>) -> Result<(), StorageError> {
        let mut push = |table: &str, rows: Vec<(String,)>| {
            out.extend(rows.into_iter().map(|(text,)| StoredRow {
                table: table.to_owned(),
                text,
            }));
        };
        push(
            "privacy_requests",
            self.select("SELECT JSON * FROM {ks}.privacy_requests", ())
                .await?,
        );
        push(
            "privacy_flags",
            self.select("SELECT JSON * FROM {ks}.privacy_flags", ())
                .await?,
        );
        push(
            "privacy_exports",
            self.select("SELECT JSON * FROM {ks}.privacy_exports", ())
                .await?,
        );
        push(
            "privacy_flag_changes",
            self.select("SELECT JSON * FROM {ks}.privacy_flag_changes", ())
                .await?,
        );
        push(
            "browser_clearings",
            self.select("SELECT JSON * FROM {ks}.browser_clearings", ())
                .await?,
        );
        Ok(())
    }
}

#[async_trait]
impl PrivacyRepo for ScyllaStore {
    async fn put_privacy_request(&self, request: &PrivacyRequest) -> Result<(), StorageError> {
        self.write_request(request).await
    }

    async fn privacy_requests_of(&self, user_id: u64) -> Result<Vec<PrivacyRequest>, StorageError> {
        let mut out = self.stored_requests_of(user_id).await?;
        out.sort_by_key(|r| std::cmp::Reverse((r.requested_at, r.request_id)));
        Ok(out)
    }

    async fn privacy_requests(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<PrivacyRequest>, StorageError> {
        let rows = self
            .rows::<(String,), _>("SELECT doc FROM {ks}.privacy_requests", (), false)
            .await?;
        futures_util::pin_mut!(rows);
        let mut out = Vec::new();
        while let Some((text,)) = rows.try_next().await? {
            let request: PrivacyRequest = parse("privacy_requests", &text)?;
            if request.requested_at >= from && request.requested_at < to {
                out.push(request);
            }
        }
        out.sort_by_key(|r| (r.requested_at, r.request_id));
        Ok(out)
    }

    async fn privacy_flags(&self, user_id: u64) -> Result<PrivacyFlags, StorageError> {
        Ok(self
            .one_doc(
                "SELECT doc FROM {ks}.privacy_flags WHERE user_id = ?",
                "privacy_flags",
                (db_id(user_id),),
            )
            .await?
            .unwrap_or_default())
    }

    async fn set_privacy_flags(
        &self,
        user_id: u64,
        flags: &PrivacyFlags,
    ) -> Result<(), StorageError> {
        self.execute(
            "INSERT INTO {ks}.privacy_flags (user_id, doc) VALUES (?, ?)",
            true,
            (db_id(user_id), doc(flags)),
        )
        .await?;
        // After the flags: a node that learns of the change reads the new ones. The table's
        // default TTL ends the row after FLAG_CHANGES_KEPT.
        self.execute(
            "INSERT INTO {ks}.privacy_flag_changes (bucket, at, user_id) VALUES (0, ?, ?)",
            true,
            (db_id(Timestamp::now().0), db_id(user_id)),
        )
        .await?;
        Ok(())
    }

    async fn privacy_flag_changes(
        &self,
        since: Timestamp,
    ) -> Result<Vec<FlagChange>, StorageError> {
        let rows: Vec<(i64, i64)> = self
            .select(
                "SELECT at, user_id FROM {ks}.privacy_flag_changes WHERE bucket = 0 AND at >= ?",
                (db_id(since.0),),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(at, user)| FlagChange {
                at: Timestamp(rust_id(at)),
                user_id: rust_id(user),
            })
            .collect())
    }

    async fn put_export(&self, export: &PreparedExport) -> Result<(), StorageError> {
        let Some(secs) = ttl(export.expires_at) else {
            return Ok(());
        };
        self.execute(
            "INSERT INTO {ks}.privacy_exports (user_id, created_at, expires_at, doc) \
             VALUES (?, ?, ?, ?) USING TTL ?",
            true,
            (
                db_id(export.user_id),
                db_id(export.created_at.0),
                db_id(export.expires_at.0),
                export.json.as_str(),
                secs,
            ),
        )
        .await?;
        Ok(())
    }

    async fn export_status(
        &self,
        user_id: u64,
        now: Timestamp,
    ) -> Result<Option<(Timestamp, Timestamp)>, StorageError> {
        let rows: Vec<(i64, i64)> = self
            .select_limit(
                "SELECT created_at, expires_at FROM {ks}.privacy_exports WHERE user_id = ?",
                (db_id(user_id),),
                1,
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(created, expires)| (Timestamp(created as u64), Timestamp(expires as u64)))
            .find(|(_, expires)| *expires > now))
    }

    async fn take_export(
        &self,
        user_id: u64,
        now: Timestamp,
    ) -> Result<Option<PreparedExport>, StorageError> {
        let rows: Option<(i64, i64, String)> = self
            .serial_one(
                "SELECT created_at, expires_at, doc FROM {ks}.privacy_exports WHERE user_id = ?",
                (db_id(user_id),),
            )
            .await?;
        let Some((created, expires, json)) = rows else {
            return Ok(None);
        };
        // Only the caller whose delete applies gets the document: a download happens once.
        let taken = self
            .lwt_resolved(
                "DELETE FROM {ks}.privacy_exports WHERE user_id = ? IF created_at = ?",
                (db_id(user_id), created),
                || async {
                    let row: Option<(i64,)> = self
                        .serial_one(
                            "SELECT created_at FROM {ks}.privacy_exports WHERE user_id = ?",
                            (db_id(user_id),),
                        )
                        .await?;
                    Ok(row.is_none_or(|(c,)| c != created))
                },
            )
            .await?;
        let export = PreparedExport {
            user_id,
            created_at: Timestamp(created as u64),
            expires_at: Timestamp(expires as u64),
            json,
        };
        Ok(Some(export).filter(|x| taken.applied && x.expires_at > now))
    }

    async fn mark_browsers_for_clearing(
        &self,
        session_ids: &[String],
        until: Timestamp,
    ) -> Result<(), StorageError> {
        let Some(secs) = ttl(until) else {
            return Ok(());
        };
        for id in session_ids {
            self.execute(
                "INSERT INTO {ks}.browser_clearings (session_id, until) VALUES (?, ?) USING TTL ?",
                true,
                (id.as_str(), db_id(until.0), secs),
            )
            .await?;
        }
        Ok(())
    }

    async fn take_browser_clearing(&self, session_id: &str) -> Result<bool, StorageError> {
        let marked: Vec<(i64,)> = self
            .select_limit(
                "SELECT until FROM {ks}.browser_clearings WHERE session_id = ?",
                (session_id,),
                1,
            )
            .await?;
        if marked.is_empty() {
            return Ok(false);
        }
        let taken = self
            .lwt_resolved(
                "DELETE FROM {ks}.browser_clearings WHERE session_id = ? IF EXISTS",
                (session_id,),
                || async { Ok(false) },
            )
            .await?;
        Ok(taken.applied)
    }
}
