//! Campaign delivery. Every `announce_poll_every` the router starts one round on a task:
//! for each active campaign and each shard whose guilds this node holds, the shard's
//! opt-ins (one partition) less the campaign's deliveries there (one range) are the guilds
//! still to reach. Each is claimed in the store before anything is sent and decided after,
//! so a guild gets a campaign once whichever node runs it, across crashes and handoffs.
//!
//! A claim whose claimant stopped deciding (older than the timer lease: a live sender gives
//! up unsent at half of it) is resolved by the guild's current node: it takes the claim
//! over (compare-and-set on the old claimant), then reads the channel's last 100 messages
//! for the campaign's marker. Found: recorded as sent (`recovered`). Not found: sent now,
//! since the old sender never posted it. Unreadable: `failed: interrupted`, never resent
//! blindly.
//!
//! Messages go in the REST client's background lane: below every reply and interaction
//! response, within the node's REST share. A campaign with `dm` then goes by DM to the users
//! of those shards who consented (`dms.rs`), claimed and decided the same way.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use protonn_storage::{Campaign, Delivery, DeliveryState, StorageError, Store, Timestamp};
use serde::Deserialize;
use twilight_cache_inmemory::ResourceType;
use twilight_http::request::TryIntoRequest;
use twilight_model::channel::message::AllowedMentions;
use twilight_model::id::Id;
use twilight_model::id::marker::{ChannelMarker, GuildMarker, MessageMarker};

use crate::guild::{claimant, is_announceable};
use crate::metrics::ANNOUNCEMENT_DELIVERIES;
use crate::permissions::{self, MaySend};
use crate::rest::{Reply, RestError};
use crate::{Services, ShardCounts};

/// Every (`outcome`, `reason`) of `protonn_announcements_deliveries_total`.
pub(crate) const DELIVERY_OUTCOMES: [(&str, &str); 7] = [
    ("sent", "posted"),
    ("sent", "recovered"),
    ("skipped", "not_opted_in"),
    ("skipped", "channel_gone"),
    ("skipped", "missing_permission"),
    ("failed", "interrupted"),
    ("failed", "discord_error"),
];
/// Recent messages read when resolving an interrupted delivery.
const RECENT_MESSAGES: u16 = 100;
/// How often a running round looks again whether its campaign was cancelled.
const CANCEL_CHECK: Duration = Duration::from_secs(1);

/// The text a campaign posts; its last line is the marker an interrupted delivery is
/// looked up by.
pub(crate) fn announcement_text(campaign: &Campaign) -> String {
    let body = match &campaign.title {
        Some(title) => format!("**{title}**\n{}", campaign.message),
        None => campaign.message.clone(),
    };
    format!("{body}\n-# {}", marker(campaign.id))
}

pub(super) fn marker(campaign_id: u64) -> String {
    format!("Service announcement {campaign_id}")
}

/// The shards this node runs (those with a guild in the node cache), by the shard counts
/// read once, so that one round or poll sees a resharding's completion whole or not at all.
pub(crate) struct HeldShards {
    pub(crate) counts: ShardCounts,
    pub(crate) shards: BTreeSet<u32>,
}

impl HeldShards {
    pub(crate) fn of(services: &Services) -> Self {
        let counts = services.shard_count.counts();
        let shards = services
            .cache
            .iter()
            .guilds()
            .map(|guild| protonn_storage::shard_of(guild.id().get(), counts.now))
            .collect();
        Self { counts, shards }
    }

    /// Whether the rows of `id` (a guild's, or a user's for DMs) are this node's.
    pub(crate) fn holds(&self, id: u64) -> bool {
        self.shards
            .contains(&protonn_storage::shard_of(id, self.counts.now))
    }

    /// Every partition rows of the held shards may be stored in, including those written
    /// before a resharding.
    pub(crate) fn partitions(&self) -> BTreeSet<u32> {
        self.shards
            .iter()
            .flat_map(|&shard| self.counts.partitions(shard))
            .collect()
    }

    /// The rows of the held shards by their owner, read partition by partition (`read`)
    /// from every one they may be stored in; `owner` names a row's guild (or user).
    pub(crate) async fn rows_by_owner<T, Read, Rows>(
        &self,
        read: impl Fn(u32) -> Read,
        owner: impl Fn(&T) -> u64,
    ) -> Result<Rows, StorageError>
    where
        Read: Future<Output = Result<Vec<T>, StorageError>>,
        Rows: Default + Extend<(u64, T)>,
    {
        let mut rows = Rows::default();
        for partition in self.partitions() {
            let listed = read(partition).await?;
            rows.extend(
                listed
                    .into_iter()
                    .map(|row| (owner(&row), row))
                    .filter(|&(owner, _)| self.holds(owner)),
            );
        }
        Ok(rows)
    }
}

/// Indexes where `guild_id` takes announcements (`None`: it does not), under the shard
/// count of now, and removes what an earlier count's partitions held of it.
pub(crate) async fn index_opt_in(
    store: &dyn Store,
    guild_id: u64,
    counts: &ShardCounts,
    channel: Option<u64>,
) -> Result<(), StorageError> {
    let shard = protonn_storage::shard_of(guild_id, counts.now);
    store.set_announce_opt_in(shard, guild_id, channel).await?;
    for partition in counts.partitions(shard) {
        if partition != shard {
            store.set_announce_opt_in(partition, guild_id, None).await?;
        }
    }
    Ok(())
}

/// One pass over the active campaigns for the shards this node runs.
pub(crate) async fn deliver_round(services: Arc<Services>) {
    let campaigns = match services.store.campaigns().await {
        Ok(campaigns) => campaigns,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read announcement campaigns");
            return;
        }
    };
    let held = HeldShards::of(&services);
    for campaign in campaigns.iter().filter(|c| c.cancelled_at.is_none()) {
        let mut round = Round {
            services: &services,
            campaign,
            held: &held,
            me: claimant(&services.node_name),
            checked: tokio::time::Instant::now(),
        };
        let active = match round.guilds().await {
            Ok(active) => active,
            Err(err) => {
                tracing::warn!(campaign = campaign.id, error = %err, "announcement round stopped");
                true
            }
        };
        if active
            && campaign.dm
            && let Err(err) = round.dms().await
        {
            tracing::warn!(campaign = campaign.id, error = %err, "announcement DM round stopped");
        }
    }
}

pub(super) struct Round<'a> {
    pub(super) services: &'a Services,
    pub(super) campaign: &'a Campaign,
    pub(super) held: &'a HeldShards,
    pub(super) me: String,
    /// When the campaign was last seen not cancelled.
    checked: tokio::time::Instant,
}

impl Round<'_> {
    /// How to claim a delivery, given the one stored (its state, claimant and time): `None`
    /// to leave it (decided, or another node's live claim), `Some(None)` for a fresh claim,
    /// `Some(Some(claimant))` to take over that claimant's.
    pub(super) fn claim_over(
        &self,
        stored: Option<(DeliveryState, &str, Timestamp)>,
        now: Timestamp,
    ) -> Option<Option<String>> {
        let stale_after = self.services.runtime.timer_lease.as_millis() as u64;
        match stored {
            None => Some(None),
            Some((state, _, _)) if state != DeliveryState::Claimed => None,
            // Ours, left unsent (its turn did not come in time): claimed afresh.
            Some((_, by, _)) if by == self.me => Some(Some(by.to_owned())),
            Some((_, by, at)) if now.0.saturating_sub(at.0) > stale_after => {
                Some(Some(by.to_owned()))
            }
            // Another node's claim, still live.
            Some(_) => None,
        }
    }

    /// Delivers to the opted-in guilds of the held shards still to reach; `false` once the
    /// campaign was cancelled. A guild's opt-in and delivery stay in the partition of the
    /// shard count they were written under: a claim goes where the guild's delivery is.
    async fn guilds(&mut self) -> Result<bool, StorageError> {
        let store = &self.services.store;
        let campaign_id = self.campaign.id;
        let opt_ins: BTreeMap<u64, (u64, u64)> = self
            .held
            .rows_by_owner(|p| store.announce_opt_ins(p), |&(guild, _)| guild)
            .await?;
        if opt_ins.is_empty() {
            return Ok(true);
        }
        let known: HashMap<u64, Delivery> = self
            .held
            .rows_by_owner(
                |p| store.deliveries(campaign_id, Some(p)),
                |d: &Delivery| d.guild_id,
            )
            .await?;
        for (guild_id, (_, channel_id)) in opt_ins {
            // Only a guild this node runs now: its shard may be moving.
            let held = Id::<GuildMarker>::new_checked(guild_id)
                .is_some_and(|id| self.services.cache.guild(id).is_some());
            if !held {
                continue;
            }
            let now = Timestamp::now();
            let claim = Delivery {
                campaign_id: self.campaign.id,
                shard_id: known.get(&guild_id).map_or_else(
                    || protonn_storage::shard_of(guild_id, self.held.counts.now),
                    |old| old.shard_id,
                ),
                guild_id,
                channel_id,
                state: DeliveryState::Claimed,
                reason: None,
                claimed_by: self.me.clone(),
                at: now,
                message_id: None,
            };
            let stored = known
                .get(&guild_id)
                .map(|old| (old.state, old.claimed_by.as_str(), old.at));
            let Some(replacing) = self.claim_over(stored, now) else {
                continue;
            };
            if !self.still_active().await? {
                return Ok(false);
            }
            if !store.claim_delivery(&claim, replacing.as_deref()).await? {
                continue;
            }
            let interrupted = replacing.is_some_and(|old| old != self.me);
            self.deliver(claim, interrupted).await?;
        }
        Ok(true)
    }

    /// Whether the campaign is still active, read again at most every [`CANCEL_CHECK`].
    pub(super) async fn still_active(&mut self) -> Result<bool, StorageError> {
        if self.checked.elapsed() < CANCEL_CHECK {
            return Ok(true);
        }
        let campaigns = self.services.store.campaigns().await?;
        self.checked = tokio::time::Instant::now();
        Ok(campaigns
            .iter()
            .any(|c| c.id == self.campaign.id && c.cancelled_at.is_none()))
    }

    /// Sends the campaign to a claimed guild (or finds it sent), and records the outcome.
    async fn deliver(&self, mut claim: Delivery, interrupted: bool) -> Result<(), StorageError> {
        let services = self.services;
        let guild_id = claim.guild_id;
        // The config is the truth: the index may be stale.
        let config = services.store.load(guild_id).await?;
        let Some(channel_id) = config.and_then(|c| c.config.announce_channel) else {
            let counts = &self.held.counts;
            let _ = index_opt_in(services.store.as_ref(), guild_id, counts, None).await;
            return self
                .decide(claim, DeliveryState::Skipped, "not_opted_in", None)
                .await;
        };
        claim.channel_id = channel_id;
        let Some(channel) = Id::<ChannelMarker>::new_checked(channel_id) else {
            return self
                .decide(claim, DeliveryState::Skipped, "channel_gone", None)
                .await;
        };
        if let Some(reason) = self.cannot_send(Id::new(guild_id), channel) {
            return self
                .decide(claim, DeliveryState::Skipped, reason, None)
                .await;
        }
        // Sent by half the lease or not at all, so a claim older than the lease is one
        // whose sender stopped.
        let give_up_at = tokio::time::Instant::now() + services.runtime.timer_lease / 2;
        let sent = match self.recover_or_post(channel, interrupted, give_up_at).await {
            Posting::Settled(state, reason, message) => {
                return self.decide(claim, state, reason, message).await;
            }
            Posting::Posted(sent) => sent,
        };
        match sent {
            Ok(reply) => {
                let message = reply.model::<Posted>().ok().map(|posted| posted.id.get());
                self.decide(claim, DeliveryState::Sent, "posted", message)
                    .await
            }
            // Not sent: the claim stays ours and the next round sends it.
            Err(RestError::Timeout | RestError::QueueFull | RestError::HeldBack(_)) => Ok(()),
            Err(RestError::Status { status: 404, .. }) => {
                self.decide(claim, DeliveryState::Skipped, "channel_gone", None)
                    .await
            }
            Err(RestError::Status { status: 403, .. }) => {
                self.decide(claim, DeliveryState::Skipped, "missing_permission", None)
                    .await
            }
            Err(err) => {
                tracing::warn!(guild_id, error = %err, "announcement not delivered");
                self.decide(claim, DeliveryState::Failed, "discord_error", None)
                    .await
            }
        }
    }

    /// Why the node cache says the bot cannot post in `channel`, when it knows.
    fn cannot_send(
        &self,
        guild_id: Id<GuildMarker>,
        channel: Id<ChannelMarker>,
    ) -> Option<&'static str> {
        let services = self.services;
        let resources = services.runtime.cache_resources;
        if resources.contains(ResourceType::CHANNEL) {
            let usable = services
                .cache
                .channel(channel)
                .is_some_and(|c| c.guild_id == Some(guild_id) && is_announceable(c.kind));
            if !usable {
                return Some("channel_gone");
            }
        }
        if resources.contains(permissions::NEEDED) {
            let may = permissions::may_send(
                &services.cache,
                &services.own_roles,
                guild_id,
                channel,
                permissions::SEND_TEXT,
            );
            if matches!(may, MaySend::No(_)) {
                return Some("missing_permission");
            }
        }
        None
    }

    /// For an `interrupted` claim, looks for the campaign's message in `channel` first (a dead
    /// sender may have posted it); posts it unless found or unknowable.
    pub(super) async fn recover_or_post(
        &self,
        channel: Id<ChannelMarker>,
        interrupted: bool,
        give_up_at: tokio::time::Instant,
    ) -> Posting {
        if interrupted {
            match self.find_posted(channel).await {
                Ok(Some(message)) => {
                    return Posting::Settled(DeliveryState::Sent, "recovered", Some(message));
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(campaign_id = self.campaign.id, channel_id = channel.get(), error = %err, "cannot tell whether an interrupted announcement was posted");
                    return Posting::Settled(DeliveryState::Failed, "interrupted", None);
                }
            }
        }
        let request = self
            .services
            .replies
            .http()
            .create_message(channel)
            .content(&announcement_text(self.campaign))
            .allowed_mentions(Some(&AllowedMentions::default()))
            .try_into_request()
            .expect("an announcement is a valid message");
        let sent = self
            .services
            .replies
            .rest()
            .send_background("create_message", request, give_up_at)
            .await;
        Posting::Posted(sent)
    }

    /// The campaign's message among the channel's recent ones, if it is there.
    async fn find_posted(&self, channel: Id<ChannelMarker>) -> Result<Option<u64>, RestError> {
        let request = self
            .services
            .replies
            .http()
            .channel_messages(channel)
            .limit(RECENT_MESSAGES)
            .try_into_request()
            .expect("a channel messages request is valid");
        let give_up_at = tokio::time::Instant::now() + self.services.runtime.timer_lease / 2;
        let reply = self
            .services
            .replies
            .rest()
            .send_background("channel_messages", request, give_up_at)
            .await?;
        let recent: Vec<Recent> = reply.model()?;
        let marker = marker(self.campaign.id);
        Ok(recent
            .into_iter()
            .find(|m| m.content.contains(&marker))
            .map(|m| m.id.get()))
    }

    async fn decide(
        &self,
        mut claim: Delivery,
        state: DeliveryState,
        reason: &'static str,
        message_id: Option<u64>,
    ) -> Result<(), StorageError> {
        claim.state = state;
        claim.reason = (state != DeliveryState::Sent).then(|| reason.to_owned());
        claim.message_id = message_id;
        claim.at = Timestamp::now();
        if self.services.store.finish_delivery(&claim).await? {
            counter!(ANNOUNCEMENT_DELIVERIES, "outcome" => state.label(), "reason" => reason)
                .increment(1);
        }
        Ok(())
    }
}

/// What [`Round::recover_or_post`] did with a claimed delivery.
pub(super) enum Posting {
    /// Decided without posting: sent (`recovered`) if an interrupted sender had posted it
    /// (this message), failed (`interrupted`) if that cannot be told.
    Settled(DeliveryState, &'static str, Option<u64>),
    /// Posted now: Discord's reply.
    Posted(Result<Reply, RestError>),
}

#[derive(Deserialize)]
pub(super) struct Posted {
    pub(super) id: Id<MessageMarker>,
}

#[derive(Deserialize)]
struct Recent {
    id: Id<MessageMarker>,
    #[serde(default)]
    content: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announcement_carries_its_marker_on_its_last_line() {
        let campaign = Campaign {
            id: 42,
            title: Some("News".into()),
            message: "Hello".into(),
            created_at: Timestamp(42),
            cancelled_at: None,
            dm: false,
        };
        assert_eq!(
            announcement_text(&campaign),
            "**News**\nHello\n-# Service announcement 42"
        );
        // The longest text fits Discord's 2,000 characters with its marker.
        let longest = Campaign {
            id: u64::MAX,
            title: Some("t".repeat(protonn_storage::CAMPAIGN_TITLE_MAX_CHARS)),
            message: "m".repeat(protonn_storage::CAMPAIGN_MESSAGE_MAX_CHARS),
            ..campaign
        };
        assert!(announcement_text(&longest).chars().count() <= 2_000);
    }
}
