//! Announcements on redb: claims and outcomes are read-compare-write inside one write
//! transaction, which redb runs one at a time.

use async_trait::async_trait;
use redb::{ReadableTable, TableDefinition};

use super::{e, from_json, open, open_read, to_json};
use crate::announcements::{check_campaign, check_claim, check_outcome};
use crate::schedules::check_schedule;
use crate::{
    AnnounceSchedule, AnnouncementRepo, Campaign, Delivery, DeliveryState, EmbeddedStore,
    StorageError, Timestamp,
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
        self.read(move |txn, _| {
            let mut out = Vec::new();
            for row in open_read(txn, CAMPAIGNS)?.iter().map_err(e)?.rev() {
                out.push(from_json("announce_campaigns", row.map_err(e)?.1.value())?);
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
        check_claim(delivery)?;
        let delivery = delivery.clone();
        let replacing = replacing.map(str::to_owned);
        self.write(move |txn, _| {
            let key = (delivery.campaign_id, delivery.shard_id, delivery.guild_id);
            let mut table = open(txn, DELIVERIES)?;
            let stored: Option<Delivery> = table
                .get(key)
                .map_err(e)?
                .map(|row| from_json("announce_deliveries", row.value()))
                .transpose()?;
            let free = match (&stored, &replacing) {
                (None, None) => true,
                (Some(old), Some(from)) => {
                    old.state == DeliveryState::Claimed && old.claimed_by == *from
                }
                _ => false,
            };
            if free {
                table
                    .insert(key, to_json(&delivery).as_slice())
                    .map_err(e)?;
            }
            Ok(free)
        })
        .await
    }

    async fn finish_delivery(&self, delivery: &Delivery) -> Result<bool, StorageError> {
        check_outcome(delivery)?;
        let delivery = delivery.clone();
        self.write(move |txn, _| {
            let key = (delivery.campaign_id, delivery.shard_id, delivery.guild_id);
            let mut table = open(txn, DELIVERIES)?;
            let held = match table.get(key).map_err(e)? {
                Some(row) => {
                    let old: Delivery = from_json("announce_deliveries", row.value())?;
                    old.state == DeliveryState::Claimed && old.claimed_by == delivery.claimed_by
                }
                None => false,
            };
            if held {
                table
                    .insert(key, to_json(&delivery).as_slice())
                    .map_err(e)?;
            }
            Ok(held)
        })
        .await
    }

    async fn deliveries(
        &self,
        campaign_id: u64,
        shard_id: Option<u32>,
    ) -> Result<Vec<Delivery>, StorageError> {
        let (first, last) = shard_id.map_or((0, u32::MAX), |shard| (shard, shard));
        self.read(move |txn, _| {
            let table = open_read(txn, DELIVERIES)?;
            let mut out = Vec::new();
            for row in table
                .range((campaign_id, first, 0)..=(campaign_id, last, u64::MAX))
                .map_err(e)?
            {
                out.push(from_json("announce_deliveries", row.map_err(e)?.1.value())?);
            }
            Ok(out)
        })
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
