//! Announcements on ScyllaDB: opt-ins by shard, campaigns in one partition, deliveries (to
//! guilds, and by DM to users) in their campaign's partition by shard; claims and outcomes are
//! LWTs on `state` and `claimed_by`. A campaign and every write of its deliveries carry the
//! TTL left until the campaign's retention ends, so they expire together.

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::records::{doc, parse};
use super::{ScyllaStore, db_id, rust_id, ttl};
use crate::announcements::{
    Decision, campaign_expiry, check_campaign, check_claim, check_outcome, dm_ref,
};
use crate::schedules::check_schedule;
use crate::{
    AnnounceSchedule, AnnouncementRepo, Campaign, Delivery, DeliveryState, DmDelivery,
    PrivacyFlags, RecipientPage, StorageError, Timestamp,
};

/// The one partition of `announce_campaigns`.
const CAMPAIGN_BUCKET: i32 = 0;

fn shard(shard_id: u32) -> Result<i32, StorageError> {
    i32::try_from(shard_id).map_err(|_| StorageError::Invalid("shard id out of range".into()))
}

/// The CQL of one deliveries table (to guilds or by DM to users), keyed by campaign, shard and
/// recipient. The statements stay `&'static str`: the statement cache keys on them.
struct DeliveryTable {
    name: &'static str,
    select_doc: &'static str,
    insert_claim: &'static str,
    replace_claim: &'static str,
    finish: &'static str,
    select_shard: &'static str,
    select_all: &'static str,
}

const DELIVERIES: DeliveryTable = DeliveryTable {
    name: "announce_deliveries",
    select_doc: "SELECT doc FROM {ks}.announce_deliveries \
                 WHERE campaign_id = ? AND shard_id = ? AND guild_id = ?",
    insert_claim: "INSERT INTO {ks}.announce_deliveries \
                   (campaign_id, shard_id, guild_id, state, claimed_by, doc) \
                   VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?",
    replace_claim: "UPDATE {ks}.announce_deliveries USING TTL ? SET claimed_by = ?, doc = ? \
                    WHERE campaign_id = ? AND shard_id = ? AND guild_id = ? \
                    IF state = ? AND claimed_by = ?",
    finish: "UPDATE {ks}.announce_deliveries USING TTL ? SET state = ?, doc = ? \
             WHERE campaign_id = ? AND shard_id = ? AND guild_id = ? \
             IF state = ? AND claimed_by = ?",
    select_shard: "SELECT doc FROM {ks}.announce_deliveries \
                   WHERE campaign_id = ? AND shard_id = ?",
    select_all: "SELECT doc FROM {ks}.announce_deliveries WHERE campaign_id = ?",
};

const DM_DELIVERIES: DeliveryTable = DeliveryTable {
    name: "announce_dm_deliveries",
    select_doc: "SELECT doc FROM {ks}.announce_dm_deliveries \
                 WHERE campaign_id = ? AND shard_id = ? AND user_id = ?",
    insert_claim: "INSERT INTO {ks}.announce_dm_deliveries \
                   (campaign_id, shard_id, user_id, state, claimed_by, doc) \
                   VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?",
    replace_claim: "UPDATE {ks}.announce_dm_deliveries USING TTL ? \
                    SET claimed_by = ?, doc = ? \
                    WHERE campaign_id = ? AND shard_id = ? AND user_id = ? \
                    IF state = ? AND claimed_by = ?",
    finish: "UPDATE {ks}.announce_dm_deliveries USING TTL ? SET state = ?, doc = ? \
             WHERE campaign_id = ? AND shard_id = ? AND user_id = ? \
             IF state = ? AND claimed_by = ?",
    select_shard: "SELECT doc FROM {ks}.announce_dm_deliveries \
                   WHERE campaign_id = ? AND shard_id = ?",
    select_all: "SELECT doc FROM {ks}.announce_dm_deliveries WHERE campaign_id = ?",
};

/// A delivery's key (campaign, shard, recipient) as bound in CQL.
fn key_values(delivery: &impl Decision) -> Result<(i64, i32, i64), StorageError> {
    let (campaign, shard_id, recipient) = delivery.key();
    Ok((db_id(campaign), shard(shard_id)?, db_id(recipient)))
}

impl ScyllaStore {
    /// Removes every scheduled announcement of a guild (the bot left it); the rows removed.
    pub(super) async fn delete_guild_schedules(&self, guild_id: u64) -> Result<u64, StorageError> {
        let schedules = self.announce_schedules(guild_id).await?;
        self.execute(
            "DELETE FROM {ks}.announce_schedules WHERE guild_id = ?",
            true,
            (db_id(guild_id),),
        )
        .await?;
        Ok(schedules.len() as u64)
    }

    async fn campaign(&self, id: u64, serial: bool) -> Result<Option<String>, StorageError> {
        const SELECT: &str = "SELECT doc FROM {ks}.announce_campaigns WHERE bucket = ? AND id = ?";
        let values = (CAMPAIGN_BUCKET, db_id(id));
        let row: Option<(String,)> = if serial {
            self.serial_one(SELECT, values).await?
        } else {
            self.select_limit(SELECT, values, 1)
                .await?
                .into_iter()
                .next()
        };
        Ok(row.map(|(text,)| text))
    }

    /// The seconds left until campaign `id` and its deliveries expire;
    /// [`StorageError::NotFound`] if it is not stored (or expired).
    async fn campaign_ttl(&self, id: u64) -> Result<i32, StorageError> {
        let campaign: Option<Campaign> = self
            .campaign(id, false)
            .await?
            .map(|text| parse("announce_campaigns", &text))
            .transpose()?;
        campaign
            .and_then(|c| ttl(campaign_expiry(&c, self.retention())))
            .ok_or_else(|| StorageError::NotFound(format!("campaign {id}")))
    }

    /// One DM delivery, for the user's export.
    pub(super) async fn dm_delivery(
        &self,
        campaign_id: u64,
        shard_id: u32,
        user_id: u64,
    ) -> Result<Option<DmDelivery>, StorageError> {
        self.one_doc(
            DM_DELIVERIES.select_doc,
            DM_DELIVERIES.name,
            (db_id(campaign_id), shard(shard_id)?, db_id(user_id)),
        )
        .await
    }

    /// Removes one DM delivery and its index entry (erasure); the rows removed.
    pub(super) async fn remove_dm_delivery(
        &self,
        campaign_id: u64,
        shard_id: u32,
        user_id: u64,
    ) -> Result<u64, StorageError> {
        let Some(delivery) = self.dm_delivery(campaign_id, shard_id, user_id).await? else {
            return Ok(0);
        };
        self.execute(
            "DELETE FROM {ks}.announce_dm_deliveries \
             WHERE campaign_id = ? AND shard_id = ? AND user_id = ?",
            true,
            (db_id(campaign_id), shard(shard_id)?, db_id(user_id)),
        )
        .await?;
        self.drop_ref(user_id, &dm_ref(&delivery)).await?;
        Ok(1)
    }

    /// The stored delivery's document in `table`, read at SERIAL (resolving an LWT).
    async fn delivery_doc(
        &self,
        table: &DeliveryTable,
        delivery: &impl Decision,
    ) -> Result<Option<String>, StorageError> {
        let row: Option<(Option<String>,)> = self
            .serial_one(table.select_doc, key_values(delivery)?)
            .await?;
        Ok(row.and_then(|(text,)| text))
    }

    /// Stores a claim in `table` (see [`AnnouncementRepo::claim_delivery`]), its row living
    /// `secs` more seconds; whether this call got it.
    async fn claim_row<D: Decision + Serialize + Sync>(
        &self,
        table: &DeliveryTable,
        delivery: &D,
        secs: i32,
        replacing: Option<&str>,
    ) -> Result<bool, StorageError> {
        let text = doc(delivery);
        let resolve =
            || async { Ok(self.delivery_doc(table, delivery).await? == Some(text.clone())) };
        let key = key_values(delivery)?;
        let claimed = DeliveryState::Claimed.label();
        let outcome = match replacing {
            None => {
                self.lwt_resolved(
                    table.insert_claim,
                    (
                        key.0,
                        key.1,
                        key.2,
                        claimed,
                        delivery.claimed_by(),
                        text.as_str(),
                        secs,
                    ),
                    resolve,
                )
                .await?
            }
            Some(from) => {
                self.lwt_resolved(
                    table.replace_claim,
                    (
                        secs,
                        delivery.claimed_by(),
                        text.as_str(),
                        key.0,
                        key.1,
                        key.2,
                        claimed,
                        from,
                    ),
                    resolve,
                )
                .await?
            }
        };
        Ok(outcome.applied)
    }

    /// Records the outcome of a claim in `table` (see [`AnnouncementRepo::finish_delivery`]).
    async fn finish_row<D: Decision + Serialize + Sync>(
        &self,
        table: &DeliveryTable,
        delivery: &D,
    ) -> Result<bool, StorageError> {
        check_outcome(delivery)?;
        let secs = self.campaign_ttl(delivery.key().0).await?;
        let text = doc(delivery);
        let resolve =
            || async { Ok(self.delivery_doc(table, delivery).await? == Some(text.clone())) };
        let key = key_values(delivery)?;
        let outcome = self
            .lwt_resolved(
                table.finish,
                (
                    secs,
                    delivery.state().label(),
                    text.as_str(),
                    key.0,
                    key.1,
                    key.2,
                    DeliveryState::Claimed.label(),
                    delivery.claimed_by(),
                ),
                resolve,
            )
            .await?;
        Ok(outcome.applied)
    }

    /// The campaign's rows in `table` of `shard_id` (of every shard with `None`).
    async fn delivery_rows<D: DeserializeOwned>(
        &self,
        table: &DeliveryTable,
        campaign_id: u64,
        shard_id: Option<u32>,
    ) -> Result<Vec<D>, StorageError> {
        let rows: Vec<(Option<String>,)> = match shard_id {
            Some(shard_id) => {
                self.select(table.select_shard, (db_id(campaign_id), shard(shard_id)?))
                    .await?
            }
            None => self.select(table.select_all, (db_id(campaign_id),)).await?,
        };
        rows.iter()
            .filter_map(|(text,)| text.as_deref())
            .map(|text| parse(table.name, text))
            .collect()
    }
}

#[async_trait]
impl AnnouncementRepo for ScyllaStore {
    async fn set_announce_opt_in(
        &self,
        shard_id: u32,
        guild_id: u64,
        channel_id: Option<u64>,
    ) -> Result<(), StorageError> {
        let shard = shard(shard_id)?;
        match channel_id {
            Some(channel) => {
                self.execute(
                    "INSERT INTO {ks}.announce_opt_ins (shard_id, guild_id, channel_id) \
                     VALUES (?, ?, ?)",
                    true,
                    (shard, db_id(guild_id), db_id(channel)),
                )
                .await?
            }
            None => {
                self.execute(
                    "DELETE FROM {ks}.announce_opt_ins WHERE shard_id = ? AND guild_id = ?",
                    true,
                    (shard, db_id(guild_id)),
                )
                .await?
            }
        };
        Ok(())
    }

    async fn announce_opt_ins(&self, shard_id: u32) -> Result<Vec<(u64, u64)>, StorageError> {
        let rows: Vec<(i64, i64)> = self
            .select(
                "SELECT guild_id, channel_id FROM {ks}.announce_opt_ins WHERE shard_id = ?",
                (shard(shard_id)?,),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(guild, channel)| (guild as u64, channel as u64))
            .collect())
    }

    async fn create_campaign(&self, campaign: &Campaign) -> Result<(), StorageError> {
        check_campaign(campaign)?;
        // Past its retention already: gone at once, as on redb for readers.
        let Some(secs) = ttl(campaign_expiry(campaign, self.retention())) else {
            return Ok(());
        };
        let text = doc(campaign);
        let resolve =
            || async { Ok(self.campaign(campaign.id, true).await? == Some(text.clone())) };
        let outcome = self
            .lwt_resolved(
                "INSERT INTO {ks}.announce_campaigns (bucket, id, doc) VALUES (?, ?, ?) \
                 IF NOT EXISTS USING TTL ?",
                (CAMPAIGN_BUCKET, db_id(campaign.id), text.as_str(), secs),
                resolve,
            )
            .await?;
        if outcome.applied {
            Ok(())
        } else {
            Err(StorageError::Conflict {
                expected: 0,
                current: campaign.id,
            })
        }
    }

    async fn campaigns(&self) -> Result<Vec<Campaign>, StorageError> {
        let rows: Vec<(String,)> = self
            .select(
                "SELECT doc FROM {ks}.announce_campaigns WHERE bucket = ?",
                (CAMPAIGN_BUCKET,),
            )
            .await?;
        rows.iter()
            .map(|(text,)| parse("announce_campaigns", text))
            .collect()
    }

    async fn cancel_campaign(&self, id: u64, at: Timestamp) -> Result<Campaign, StorageError> {
        // A compare-and-set on the document: a cancel that raced another keeps the first.
        loop {
            let Some(text) = self.campaign(id, true).await? else {
                return Err(StorageError::NotFound(format!("campaign {id}")));
            };
            let mut campaign: Campaign = parse("announce_campaigns", &text)?;
            if campaign.cancelled_at.is_some() {
                return Ok(campaign);
            }
            campaign.cancelled_at = Some(at);
            // The row keeps its expiry: an UPDATE without a TTL would keep the cell forever.
            let secs = ttl(campaign_expiry(&campaign, self.retention())).unwrap_or(1);
            let next = doc(&campaign);
            let resolve = || async { Ok(self.campaign(id, true).await? == Some(next.clone())) };
            let outcome = self
                .lwt_resolved(
                    "UPDATE {ks}.announce_campaigns USING TTL ? SET doc = ? \
                     WHERE bucket = ? AND id = ? IF doc = ?",
                    (
                        secs,
                        next.as_str(),
                        CAMPAIGN_BUCKET,
                        db_id(id),
                        text.as_str(),
                    ),
                    resolve,
                )
                .await?;
            if outcome.applied {
                return Ok(campaign);
            }
        }
    }

    async fn claim_delivery(
        &self,
        delivery: &Delivery,
        replacing: Option<&str>,
    ) -> Result<bool, StorageError> {
        check_claim(delivery)?;
        let secs = self.campaign_ttl(delivery.campaign_id).await?;
        self.claim_row(&DELIVERIES, delivery, secs, replacing).await
    }

    async fn finish_delivery(&self, delivery: &Delivery) -> Result<bool, StorageError> {
        self.finish_row(&DELIVERIES, delivery).await
    }

    async fn deliveries(
        &self,
        campaign_id: u64,
        shard_id: Option<u32>,
    ) -> Result<Vec<Delivery>, StorageError> {
        self.delivery_rows(&DELIVERIES, campaign_id, shard_id).await
    }

    async fn dm_recipients(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<RecipientPage, StorageError> {
        let rows: Vec<(i64, Option<String>)> = match after {
            None => {
                self.select_limit("SELECT user_id, doc FROM {ks}.privacy_flags", (), limit)
                    .await?
            }
            Some(after) => {
                self.select_limit(
                    "SELECT user_id, doc FROM {ks}.privacy_flags \
                     WHERE token(user_id) > token(?)",
                    (db_id(after),),
                    limit,
                )
                .await?
            }
        };
        let mut page = RecipientPage {
            users: Vec::new(),
            next: (rows.len() == limit)
                .then(|| rows.last().map(|(user, _)| rust_id(*user)))
                .flatten(),
        };
        for (user, text) in &rows {
            let flags: PrivacyFlags = match text {
                Some(text) => parse("privacy_flags", text)?,
                None => continue,
            };
            if flags.may_announce() {
                page.users.push(rust_id(*user));
            }
        }
        Ok(page)
    }

    async fn claim_dm_delivery(
        &self,
        delivery: &DmDelivery,
        replacing: Option<&str>,
    ) -> Result<bool, StorageError> {
        check_claim(delivery)?;
        let secs = self.campaign_ttl(delivery.campaign_id).await?;
        // Its index entry first: an LWT cannot share a batch with another partition.
        self.add_ref(delivery.user_id, &dm_ref(delivery), Some(secs))
            .await?;
        self.claim_row(&DM_DELIVERIES, delivery, secs, replacing)
            .await
    }

    async fn finish_dm_delivery(&self, delivery: &DmDelivery) -> Result<bool, StorageError> {
        self.finish_row(&DM_DELIVERIES, delivery).await
    }

    async fn dm_deliveries(
        &self,
        campaign_id: u64,
        shard_id: Option<u32>,
    ) -> Result<Vec<DmDelivery>, StorageError> {
        self.delivery_rows(&DM_DELIVERIES, campaign_id, shard_id)
            .await
    }

    async fn put_announce_schedule(&self, schedule: &AnnounceSchedule) -> Result<(), StorageError> {
        check_schedule(schedule)?;
        self.execute(
            "INSERT INTO {ks}.announce_schedules (guild_id, schedule_id, doc) VALUES (?, ?, ?)",
            true,
            (
                db_id(schedule.guild_id),
                db_id(schedule.schedule_id),
                doc(schedule),
            ),
        )
        .await?;
        Ok(())
    }

    async fn announce_schedules(
        &self,
        guild_id: u64,
    ) -> Result<Vec<AnnounceSchedule>, StorageError> {
        self.docs(
            "SELECT doc FROM {ks}.announce_schedules WHERE guild_id = ?",
            "announce_schedules",
            (db_id(guild_id),),
        )
        .await
    }

    async fn delete_announce_schedule(
        &self,
        guild_id: u64,
        schedule_id: u64,
    ) -> Result<bool, StorageError> {
        let existed: Vec<(i64,)> = self
            .select(
                "SELECT schedule_id FROM {ks}.announce_schedules WHERE guild_id = ? AND schedule_id = ?",
                (db_id(guild_id), db_id(schedule_id)),
            )
            .await?;
        if existed.is_empty() {
            return Ok(false);
        }
        self.execute(
            "DELETE FROM {ks}.announce_schedules WHERE guild_id = ? AND schedule_id = ?",
            true,
            (db_id(guild_id), db_id(schedule_id)),
        )
        .await?;
        Ok(true)
    }
}
