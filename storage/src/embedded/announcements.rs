//! Announcements on redb: claims and outcomes are read-compare-write inside one write
//! transaction, which redb runs one at a time. Campaigns are few, so the retention sweep scans
//! them and removes an expired one with its deliveries (two ranges).

use async_trait::async_trait;
use redb::{ReadableTable, TableDefinition, TableHandle, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::privacy::PRIVACY_FLAGS;
use super::{e, from_json, index, open, open_read, to_json, unindex};
use crate::announcements::{
    Decision, campaign_expiry, check_campaign, check_claim, check_outcome, dm_ref,
};
use crate::schedules::check_schedule;
use crate::{
    AnnounceSchedule, AnnouncementRepo, Campaign, Delivery, DeliveryState, DmDelivery,
    EmbeddedStore, PrivacyFlags, RecipientPage, Retention, StorageError, Timestamp,
};

/// (shard id, guild id) → the guild's announcement channel.
pub(super) const ANNOUNCE_OPT_INS: TableDefinition<(u32, u64), u64> =
    TableDefinition::new("announce_opt_ins");
/// campaign id → [`Campaign`].
pub(super) const CAMPAIGNS: TableDefinition<u64, &[u8]> =
    TableDefinition::new("announce_campaigns");
/// (campaign id, shard id, guild id) → [`Delivery`].
pub(super) const DELIVERIES: TableDefinition<(u64, u32, u64), &[u8]> =
    TableDefinition::new("announce_deliveries");
/// (campaign id, shard id, user id) → [`DmDelivery`]; each in its user's `user_refs`.
pub(super) const DM_DELIVERIES: TableDefinition<(u64, u32, u64), &[u8]> =
    TableDefinition::new("announce_dm_deliveries");
/// (guild id, schedule id) → [`AnnounceSchedule`].
pub(super) const SCHEDULES: TableDefinition<(u64, u64), &[u8]> =
    TableDefinition::new("announce_schedules");

/// Removes every scheduled announcement of a guild (the bot left it); the rows removed.
pub(super) fn delete_guild_schedules(
    txn: &redb::WriteTransaction,
    guild_id: u64,
) -> Result<u64, StorageError> {
    let mut table = open(txn, SCHEDULES)?;
    let mut ids = Vec::new();
    for row in table
        .range((guild_id, 0)..=(guild_id, u64::MAX))
        .map_err(e)?
    {
        ids.push(row.map_err(e)?.0.value().1);
    }
    for id in &ids {
        table.remove((guild_id, *id)).map_err(e)?;
    }
    Ok(ids.len() as u64)
}

/// The campaign, if stored and not past its retention.
fn live_campaign(
    txn: &WriteTransaction,
    id: u64,
    retention: &Retention,
) -> Result<Campaign, StorageError> {
    let stored: Option<Campaign> = open(txn, CAMPAIGNS)?
        .get(id)
        .map_err(e)?
        .map(|row| from_json("announce_campaigns", row.value()))
        .transpose()?;
    match stored {
        Some(campaign) if campaign_expiry(&campaign, retention) > Timestamp::now() => Ok(campaign),
        _ => Err(StorageError::NotFound(format!("campaign {id}"))),
    }
}

/// Stores `delivery` under its key if it is free (no delivery, or with `replacing` a claim by
/// that claimant); whether it was, and whether the key was new.
fn claim<D: Decision + Serialize + DeserializeOwned>(
    txn: &WriteTransaction,
    table: TableDefinition<(u64, u32, u64), &[u8]>,
    delivery: &D,
    replacing: Option<&str>,
) -> Result<(bool, bool), StorageError> {
    let key = delivery.key();
    let name = table.name();
    let mut table = open(txn, table)?;
    let stored: Option<D> = table
        .get(key)
        .map_err(e)?
        .map(|row| from_json(name, row.value()))
        .transpose()?;
    let free = match (&stored, replacing) {
        (None, None) => true,
        (Some(old), Some(from)) => {
            old.state() == DeliveryState::Claimed && old.claimed_by() == from
        }
        _ => false,
    };
    if free {
        table.insert(key, to_json(delivery).as_slice()).map_err(e)?;
    }
    Ok((free, stored.is_none()))
}

/// Stores the outcome `delivery` under its key if its claimant still holds the claim;
/// whether it did.
fn finish<D: Decision + Serialize + DeserializeOwned>(
    txn: &WriteTransaction,
    table: TableDefinition<(u64, u32, u64), &[u8]>,
    delivery: &D,
) -> Result<bool, StorageError> {
    let key = delivery.key();
    let name = table.name();
    let mut table = open(txn, table)?;
    let held = match table.get(key).map_err(e)? {
        Some(row) => {
            let old: D = from_json(name, row.value())?;
            old.state() == DeliveryState::Claimed && old.claimed_by() == delivery.claimed_by()
        }
        None => false,
    };
    if held {
        table.insert(key, to_json(delivery).as_slice()).map_err(e)?;
    }
    Ok(held)
}

/// What a delivery type needs to be claimed and decided in its table.
trait StoredDelivery: Decision + Serialize + DeserializeOwned + Clone + Send + 'static {}
impl<D: Decision + Serialize + DeserializeOwned + Clone + Send + 'static> StoredDelivery for D {}

impl EmbeddedStore {
    /// Claims `delivery` in `table` (see [`AnnouncementRepo::claim_delivery`]); `on_new_row`
    /// runs in the same transaction when the claim stored a new row.
    async fn claim_in<D: StoredDelivery>(
        &self,
        table: TableDefinition<'static, (u64, u32, u64), &'static [u8]>,
        delivery: &D,
        replacing: Option<&str>,
        on_new_row: fn(&WriteTransaction, &D) -> Result<(), StorageError>,
    ) -> Result<bool, StorageError> {
        check_claim(delivery)?;
        let delivery = delivery.clone();
        let replacing = replacing.map(str::to_owned);
        self.write(move |txn, retention| {
            live_campaign(txn, delivery.key().0, retention)?;
            let (got, new) = claim(txn, table, &delivery, replacing.as_deref())?;
            if new && got {
                on_new_row(txn, &delivery)?;
            }
            Ok(got)
        })
        .await
    }

    /// Records the outcome of a claim in `table` (see [`AnnouncementRepo::finish_delivery`]).
    async fn finish_in<D: StoredDelivery>(
        &self,
        table: TableDefinition<'static, (u64, u32, u64), &'static [u8]>,
        delivery: &D,
    ) -> Result<bool, StorageError> {
        check_outcome(delivery)?;
        let delivery = delivery.clone();
        self.write(move |txn, _| finish(txn, table, &delivery))
            .await
    }
}

fn in_range<D: DeserializeOwned>(
    txn: &redb::ReadTransaction,
    table: TableDefinition<(u64, u32, u64), &[u8]>,
    campaign_id: u64,
    shard_id: Option<u32>,
) -> Result<Vec<D>, StorageError> {
    let (first, last) = shard_id.map_or((0, u32::MAX), |shard| (shard, shard));
    let name = table.name();
    let table = open_read(txn, table)?;
    let mut out = Vec::new();
    for row in table
        .range((campaign_id, first, 0)..=(campaign_id, last, u64::MAX))
        .map_err(e)?
    {
        out.push(from_json(name, row.map_err(e)?.1.value())?);
    }
    Ok(out)
}

/// Removes one DM delivery and its index entry; whether it was there.
pub(super) fn remove_dm_delivery(
    txn: &WriteTransaction,
    key: (u64, u32, u64),
) -> Result<bool, StorageError> {
    let removed: Option<DmDelivery> = open(txn, DM_DELIVERIES)?
        .remove(key)
        .map_err(e)?
        .map(|row| from_json("announce_dm_deliveries", row.value()))
        .transpose()?;
    let Some(removed) = removed else {
        return Ok(false);
    };
    unindex(txn, &dm_ref(&removed), &[removed.user_id], None)?;
    Ok(true)
}

/// Every stored DM delivery, for the consistency check.
pub(super) fn all_dm_deliveries(
    txn: &redb::ReadTransaction,
) -> Result<Vec<DmDelivery>, StorageError> {
    let mut out = Vec::new();
    for row in open_read(txn, DM_DELIVERIES)?.iter().map_err(e)? {
        out.push(from_json(
            "announce_dm_deliveries",
            row.map_err(e)?.1.value(),
        )?);
    }
    Ok(out)
}

/// Removes the campaigns past their retention at `now` with all their deliveries; the rows
/// removed.
pub(super) fn sweep(
    txn: &WriteTransaction,
    now: Timestamp,
    retention: &Retention,
) -> Result<u64, StorageError> {
    let mut expired = Vec::new();
    for row in open(txn, CAMPAIGNS)?.iter().map_err(e)? {
        let campaign: Campaign = from_json("announce_campaigns", row.map_err(e)?.1.value())?;
        if campaign_expiry(&campaign, retention) <= now {
            expired.push(campaign.id);
        }
    }
    let mut removed = 0;
    for id in expired {
        open(txn, CAMPAIGNS)?.remove(id).map_err(e)?;
        removed += 1;
        let range = (id, 0, 0)..=(id, u32::MAX, u64::MAX);
        let mut deliveries = open(txn, DELIVERIES)?;
        for row in deliveries
            .extract_from_if(range.clone(), |_, _| true)
            .map_err(e)?
        {
            row.map_err(e)?;
            removed += 1;
        }
        drop(deliveries);
        let mut keys = Vec::new();
        for row in open(txn, DM_DELIVERIES)?.range(range).map_err(e)? {
            keys.push(row.map_err(e)?.0.value());
        }
        for key in keys {
            removed += u64::from(remove_dm_delivery(txn, key)?);
        }
    }
    Ok(removed)
}

#[async_trait]
impl AnnouncementRepo for EmbeddedStore {
    async fn set_announce_opt_in(
        &self,
        shard_id: u32,
        guild_id: u64,
        channel_id: Option<u64>,
    ) -> Result<(), StorageError> {
        self.write(move |txn, _| {
            let mut table = open(txn, ANNOUNCE_OPT_INS)?;
            match channel_id {
                Some(channel) => table.insert((shard_id, guild_id), channel).map(drop),
                None => table.remove((shard_id, guild_id)).map(drop),
            }
            .map_err(e)
        })
        .await
    }

    async fn announce_opt_ins(&self, shard_id: u32) -> Result<Vec<(u64, u64)>, StorageError> {
        self.read(move |txn, _| {
            let table = open_read(txn, ANNOUNCE_OPT_INS)?;
            let mut out = Vec::new();
            for row in table
                .range((shard_id, 0)..=(shard_id, u64::MAX))
                .map_err(e)?
            {
                let (key, channel) = row.map_err(e)?;
                out.push((key.value().1, channel.value()));
            }
            Ok(out)
        })
        .await
    }

    async fn create_campaign(&self, campaign: &Campaign) -> Result<(), StorageError> {
        check_campaign(campaign)?;
        let campaign = campaign.clone();
        self.write(move |txn, _| {
            let mut table = open(txn, CAMPAIGNS)?;
            if table.get(campaign.id).map_err(e)?.is_some() {
                return Err(StorageError::Conflict {
                    expected: 0,
                    current: campaign.id,
                });
            }
            table
                .insert(campaign.id, to_json(&campaign).as_slice())
                .map_err(e)?;
            Ok(())
        })
        .await
    }

    async fn campaigns(&self) -> Result<Vec<Campaign>, StorageError> {
        self.read(move |txn, retention| {
            let now = Timestamp::now();
            let mut out = Vec::new();
            for row in open_read(txn, CAMPAIGNS)?.iter().map_err(e)?.rev() {
                let campaign = from_json("announce_campaigns", row.map_err(e)?.1.value())?;
                // Past retention but not swept yet: gone as far as readers know.
                if campaign_expiry(&campaign, retention) > now {
                    out.push(campaign);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn cancel_campaign(&self, id: u64, at: Timestamp) -> Result<Campaign, StorageError> {
        self.write(move |txn, _| {
            let mut table = open(txn, CAMPAIGNS)?;
            let mut campaign: Campaign = match table.get(id).map_err(e)? {
                Some(row) => from_json("announce_campaigns", row.value())?,
                None => return Err(StorageError::NotFound(format!("campaign {id}"))),
            };
            if campaign.cancelled_at.is_none() {
                campaign.cancelled_at = Some(at);
                table.insert(id, to_json(&campaign).as_slice()).map_err(e)?;
            }
            Ok(campaign)
        })
        .await
    }

    async fn claim_delivery(
        &self,
        delivery: &Delivery,
        replacing: Option<&str>,
    ) -> Result<bool, StorageError> {
        self.claim_in(DELIVERIES, delivery, replacing, |_, _| Ok(()))
            .await
    }

    async fn finish_delivery(&self, delivery: &Delivery) -> Result<bool, StorageError> {
        self.finish_in(DELIVERIES, delivery).await
    }

    async fn deliveries(
        &self,
        campaign_id: u64,
        shard_id: Option<u32>,
    ) -> Result<Vec<Delivery>, StorageError> {
        self.read(move |txn, _| in_range(txn, DELIVERIES, campaign_id, shard_id))
            .await
    }

    async fn dm_recipients(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<RecipientPage, StorageError> {
        let first = match after {
            Some(u64::MAX) => return Ok(RecipientPage::default()),
            Some(after) => after + 1,
            None => 0,
        };
        self.read(move |txn, _| {
            let table = open_read(txn, PRIVACY_FLAGS)?;
            let mut page = RecipientPage::default();
            let mut read = 0;
            for row in table.range(first..).map_err(e)? {
                if read == limit {
                    break;
                }
                let (user, flags) = row.map_err(e)?;
                let flags: PrivacyFlags = from_json("privacy_flags", flags.value())?;
                read += 1;
                page.next = Some(user.value());
                if flags.may_announce() {
                    page.users.push(user.value());
                }
            }
            if read < limit {
                page.next = None;
            }
            Ok(page)
        })
        .await
    }

    async fn claim_dm_delivery(
        &self,
        delivery: &DmDelivery,
        replacing: Option<&str>,
    ) -> Result<bool, StorageError> {
        self.claim_in(DM_DELIVERIES, delivery, replacing, |txn, delivery| {
            index(txn, &dm_ref(delivery), &[delivery.user_id], None)
        })
        .await
    }

    async fn finish_dm_delivery(&self, delivery: &DmDelivery) -> Result<bool, StorageError> {
        self.finish_in(DM_DELIVERIES, delivery).await
    }

    async fn dm_deliveries(
        &self,
        campaign_id: u64,
        shard_id: Option<u32>,
    ) -> Result<Vec<DmDelivery>, StorageError> {
        self.read(move |txn, _| in_range(txn, DM_DELIVERIES, campaign_id, shard_id))
            .await
    }

    async fn put_announce_schedule(&self, schedule: &AnnounceSchedule) -> Result<(), StorageError> {
        check_schedule(schedule)?;
        let schedule = schedule.clone();
        self.write(move |txn, _| {
            open(txn, SCHEDULES)?
                .insert(
                    (schedule.guild_id, schedule.schedule_id),
                    to_json(&schedule).as_slice(),
                )
                .map_err(e)?;
            Ok(())
        })
        .await
    }

    async fn announce_schedules(
        &self,
        guild_id: u64,
    ) -> Result<Vec<AnnounceSchedule>, StorageError> {
        self.read(move |txn, _| {
            let table = open_read(txn, SCHEDULES)?;
            let mut out = Vec::new();
            for row in table
                .range((guild_id, 0)..=(guild_id, u64::MAX))
                .map_err(e)?
            {
                out.push(from_json("announce_schedules", row.map_err(e)?.1.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_announce_schedule(
        &self,
        guild_id: u64,
        schedule_id: u64,
    ) -> Result<bool, StorageError> {
        self.write(move |txn, _| {
            let removed = open(txn, SCHEDULES)?
                .remove((guild_id, schedule_id))
                .map_err(e)?
                .is_some();
            Ok(removed)
        })
        .await
    }
}
