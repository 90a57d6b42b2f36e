//! Dashboard sessions on ScyllaDB: rows carry a TTL to the session's end; the single-use
//! login state is an LWT on the whole document.

use async_trait::async_trait;

use super::records::{doc, parse};
use crate::scylla::{db_id, rust_id, ttl};
use crate::web_sessions::web_session_end;
use crate::{ScyllaStore, StorageError, Timestamp, WebSession, WebSessionRepo};

impl ScyllaStore {
    async fn web_session_doc(
        &self,
        id: &str,
    ) -> Result<Option<(String, WebSession)>, StorageError> {
        let rows: Vec<(Option<String>,)> = self
            .select_limit("SELECT doc FROM {ks}.web_sessions WHERE id = ?", (id,), 1)
            .await?;
        match rows.into_iter().next() {
            Some((Some(text),)) => {
                let session = parse("web_sessions", &text)?;
                Ok(Some((text, session)))
            }
            _ => Ok(None),
        }
    }

    async fn index_web_session(&self, session: &WebSession, secs: i32) -> Result<(), StorageError> {
        if let Some(user) = session.user_id {
            self.execute(
                "INSERT INTO {ks}.web_sessions_by_user (user_id, id) VALUES (?, ?) USING TTL ?",
                true,
                (db_id(user), session.id.as_str(), secs),
            )
            .await?;
        }
        Ok(())
    }

    async fn unindex_web_session(&self, session: &WebSession) -> Result<(), StorageError> {
        if let Some(user) = session.user_id {
            self.execute(
                "DELETE FROM {ks}.web_sessions_by_user WHERE user_id = ? AND id = ?",
                true,
                (db_id(user), session.id.as_str()),
            )
            .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl WebSessionRepo for ScyllaStore {
    async fn put_web_session(&self, session: &WebSession) -> Result<(), StorageError> {
        let Some(secs) = ttl(web_session_end(session)) else {
            return self.delete_web_session(&session.id).await;
        };
        if let Some((_, old)) = self.web_session_doc(&session.id).await?
            && old.user_id != session.user_id
        {
            self.unindex_web_session(&old).await?;
        }
        // Index first: a listed id without its row is skipped on read, a row without its
        // index entry would escape "log out everywhere".
        self.index_web_session(session, secs).await?;
        self.execute(
            "INSERT INTO {ks}.web_sessions (id, doc) VALUES (?, ?) USING TTL ?",
            true,
            (session.id.as_str(), doc(session), secs),
        )
        .await?;
        Ok(())
    }

    async fn web_session(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<WebSession>, StorageError> {
        Ok(self
            .web_session_doc(id)
            .await?
            .map(|(_, session)| session)
            .filter(|s| web_session_end(s) > now))
    }

    async fn replace_web_session(
        &self,
        old: &WebSession,
        new: &WebSession,
    ) -> Result<bool, StorageError> {
        if old.id != new.id {
            return Err(StorageError::Invalid(
                "a session keeps its id when replaced".into(),
            ));
        }
        let Some((text, current)) = self.web_session_doc(&old.id).await? else {
            return Ok(false);
        };
        if &current != old {
            return Ok(false);
        }
        let Some(secs) = ttl(web_session_end(new)) else {
            return Ok(false);
        };
        self.index_web_session(new, secs).await?;
        let new_doc = doc(new);
        // A timed-out update is resolved by reading the document at SERIAL.
        let resolve = || async {
            let row: Option<(Option<String>,)> = self
                .serial_one(
                    "SELECT doc FROM {ks}.web_sessions WHERE id = ?",
                    (new.id.as_str(),),
                )
                .await?;
            Ok(row.and_then(|(doc,)| doc).as_deref() == Some(new_doc.as_str()))
        };
        let applied = self
            .lwt_resolved(
                "UPDATE {ks}.web_sessions USING TTL ? SET doc = ? WHERE id = ? IF doc = ?",
                (secs, new_doc.as_str(), new.id.as_str(), text),
                resolve,
            )
            .await?
            .applied;
        if applied && old.user_id != new.user_id {
            self.unindex_web_session(old).await?;
        }
        Ok(applied)
    }

    async fn delete_web_session(&self, id: &str) -> Result<(), StorageError> {
        if let Some((_, session)) = self.web_session_doc(id).await? {
            self.unindex_web_session(&session).await?;
        }
        self.execute("DELETE FROM {ks}.web_sessions WHERE id = ?", true, (id,))
            .await?;
        Ok(())
    }

    async fn web_sessions_of(
        &self,
        user_id: u64,
        now: Timestamp,
    ) -> Result<Vec<WebSession>, StorageError> {
        let ids: Vec<(String,)> = self
            .select(
                "SELECT id FROM {ks}.web_sessions_by_user WHERE user_id = ?",
                (db_id(user_id),),
            )
            .await?;
        let mut out = Vec::new();
        for (id,) in ids {
            if let Some(session) = self.web_session(&id, now).await?
                && session.user_id == Some(user_id)
            {
                out.push(session);
            }
        }
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    async fn delete_web_sessions_of(&self, user_id: u64) -> Result<u64, StorageError> {
        let ids: Vec<(i64, String)> = self
            .select(
                "SELECT user_id, id FROM {ks}.web_sessions_by_user WHERE user_id = ?",
                (db_id(user_id),),
            )
            .await?;
        let mut count = 0;
        for (user, id) in ids {
            debug_assert_eq!(rust_id(user), user_id);
            if self.web_session_doc(&id).await?.is_some() {
                count += 1;
            }
            self.execute(
                "DELETE FROM {ks}.web_sessions WHERE id = ?",
                true,
                (id.as_str(),),
            )
            .await?;
        }
        self.execute(
            "DELETE FROM {ks}.web_sessions_by_user WHERE user_id = ?",
            true,
            (db_id(user_id),),
        )
        .await?;
        Ok(count)
    }

    async fn sweep_web_sessions(&self, _now: Timestamp) -> Result<u64, StorageError> {
        // TTLs remove expired rows here.
        Ok(0)
    }
}
