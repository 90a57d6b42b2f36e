//! Dashboard sessions on redb: no TTL here, so reads skip expired rows and
//! [`sweep_web_sessions`](WebSessionRepo::sweep_web_sessions) removes them.

use async_trait::async_trait;
use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{e, from_json, open, open_read, to_json};
use crate::web_sessions::web_session_end;
use crate::{EmbeddedStore, StorageError, Timestamp, WebSession, WebSessionRepo};

/// session id → [`WebSession`].
pub(super) const WEB_SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("web_sessions");
/// (user id, session id) → ().
pub(super) const WEB_SESSIONS_BY_USER: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("web_sessions_by_user");

fn stored(txn: &WriteTransaction, id: &str) -> Result<Option<WebSession>, StorageError> {
    let table = open(txn, WEB_SESSIONS)?;
    let row = table.get(id).map_err(e)?;
    row.map(|v| from_json(format_args!("web_sessions/{id}"), v.value()))
        .transpose()
}

fn write(txn: &WriteTransaction, session: &WebSession) -> Result<(), StorageError> {
    if let Some(old) = stored(txn, &session.id)?
        && old.user_id != session.user_id
    {
        remove(txn, &old)?;
    }
    open(txn, WEB_SESSIONS)?
        .insert(session.id.as_str(), to_json(session).as_slice())
        .map_err(e)?;
    if let Some(user) = session.user_id {
        open(txn, WEB_SESSIONS_BY_USER)?
            .insert((user, session.id.as_str()), ())
            .map_err(e)?;
    }
    Ok(())
}

fn remove(txn: &WriteTransaction, session: &WebSession) -> Result<(), StorageError> {
    open(txn, WEB_SESSIONS)?
        .remove(session.id.as_str())
        .map_err(e)?;
    if let Some(user) = session.user_id {
        open(txn, WEB_SESSIONS_BY_USER)?
            .remove((user, session.id.as_str()))
            .map_err(e)?;
    }
    Ok(())
}

/// Every stored session of `user_id`, expired or not (the sweeper may not have run yet),
/// oldest first: for the account page and the user's data export.
pub(super) fn stored_of(
    txn: &redb::ReadTransaction,
    user_id: u64,
) -> Result<Vec<WebSession>, StorageError> {
    let index = open_read(txn, WEB_SESSIONS_BY_USER)?;
    let table = open_read(txn, WEB_SESSIONS)?;
    let mut out = Vec::new();
    for entry in index
        .range((user_id, "")..(user_id.saturating_add(1), ""))
        .map_err(e)?
    {
        let (key, _) = entry.map_err(e)?;
        let (_, id) = key.value();
        if let Some(row) = table.get(id).map_err(e)? {
            let session: WebSession = from_json(format_args!("web_sessions/{id}"), row.value())?;
            if session.user_id == Some(user_id) {
                out.push(session);
            }
        }
    }
    out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(out)
}

/// Removes every session of `user_id` ("log out everywhere", erasure); returns how many.
pub(super) fn remove_all_of(txn: &WriteTransaction, user_id: u64) -> Result<u64, StorageError> {
    let ids: Vec<String> = {
        let index = open(txn, WEB_SESSIONS_BY_USER)?;
        let mut ids = Vec::new();
        for entry in index
            .range((user_id, "")..(user_id.saturating_add(1), ""))
            .map_err(e)?
        {
            let (key, _) = entry.map_err(e)?;
            ids.push(key.value().1.to_owned());
        }
        ids
    };
    let mut count = 0;
    for id in ids {
        open(txn, WEB_SESSIONS_BY_USER)?
            .remove((user_id, id.as_str()))
            .map_err(e)?;
        if open(txn, WEB_SESSIONS)?
            .remove(id.as_str())
            .map_err(e)?
            .is_some()
        {
            count += 1;
        }
    }
    Ok(count)
}

#[async_trait]
impl WebSessionRepo for EmbeddedStore {
    async fn put_web_session(&self, session: &WebSession) -> Result<(), StorageError> {
        let session = session.clone();
        self.write(move |txn, _| write(txn, &session)).await
    }

    async fn web_session(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<WebSession>, StorageError> {
        let id = id.to_owned();
        self.read(move |txn, _| {
            let table = open_read(txn, WEB_SESSIONS)?;
            let row = table.get(id.as_str()).map_err(e)?;
            let session: Option<WebSession> = row
                .map(|v| from_json(format_args!("web_sessions/{id}"), v.value()))
                .transpose()?;
            Ok(session.filter(|s| web_session_end(s) > now))
        })
        .await
    }

    async fn replace_web_session(
        &self,
        old: &WebSession,
        new: &WebSession,
    ) -> Result<bool, StorageError> {
        let (old, new) = (old.clone(), new.clone());
        self.write(move |txn, _| {
            if stored(txn, &old.id)?.as_ref() != Some(&old) {
                return Ok(false);
            }
            if new.id != old.id {
                remove(txn, &old)?;
            }
            write(txn, &new)?;
            Ok(true)
        })
        .await
    }

    async fn delete_web_session(&self, id: &str) -> Result<(), StorageError> {
        let id = id.to_owned();
        self.write(move |txn, _| match stored(txn, &id)? {
            Some(session) => remove(txn, &session),
            None => Ok(()),
        })
        .await
    }

    async fn web_sessions_of(
        &self,
        user_id: u64,
        now: Timestamp,
    ) -> Result<Vec<WebSession>, StorageError> {
        self.read(move |txn, _| {
            let mut out = stored_of(txn, user_id)?;
            out.retain(|session| web_session_end(session) > now);
            Ok(out)
        })
        .await
    }

    async fn delete_web_sessions_of(&self, user_id: u64) -> Result<u64, StorageError> {
        self.write(move |txn, _| remove_all_of(txn, user_id)).await
    }

    async fn sweep_web_sessions(&self, now: Timestamp) -> Result<u64, StorageError> {
        self.write(move |txn, _| {
            let expired: Vec<WebSession> = {
                let table = open(txn, WEB_SESSIONS)?;
                let mut expired = Vec::new();
                for entry in table.iter().map_err(e)? {
                    let (key, value) = entry.map_err(e)?;
                    let session: WebSession =
                        from_json(format_args!("web_sessions/{}", key.value()), value.value())?;
                    if web_session_end(&session) <= now {
                        expired.push(session);
                    }
                }
                expired
            };
            for session in &expired {
                remove(txn, session)?;
            }
            Ok(expired.len() as u64)
        })
        .await
    }
}
