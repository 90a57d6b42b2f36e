//! Campaign DMs. A campaign with `dm` also goes to every user whose stored privacy flags
//! allow announcement DMs (`PrivacyFlags::may_announce`: consent given, no objection or
//! restriction), found a page at a time (`dm_recipients`). A user belongs to the shard of
//! their id (Discord's formula), so the node that runs that shard sends their DM, as the node
//! that runs a guild sends its announcement; each DM is claimed before anything is sent and
//! decided after, with the same take-over of a dead sender's claim (the DM channel's last 100
//! messages are read for the campaign's marker).
//!
//! Consent is read again just before each DM, so a user who withdrew it after the campaign
//! began, or after their page was read, gets nothing (`skipped: no_consent`).

use std::collections::HashMap;

use metrics::counter;
use protonn_storage::{DeliveryState, DmDelivery, StorageError, Timestamp, shard_of};
use serde::Deserialize;
use twilight_http::request::TryIntoRequest;
use twilight_model::id::Id;
use twilight_model::id::marker::{ChannelMarker, UserMarker};

use super::campaigns::{Posted, Posting, Round};
use crate::metrics::ANNOUNCEMENT_DMS;
use crate::rest::RestError;

/// Every (`outcome`, `reason`) of `protonn_announcements_dms_total`.
pub(crate) const DM_OUTCOMES: [(&str, &str); 6] = [
    ("sent", "posted"),
    ("sent", "recovered"),
    ("skipped", "no_consent"),
    ("skipped", "dm_closed"),
    ("failed", "interrupted"),
    ("failed", "discord_error"),
];
/// Users whose flags one store call reads: a page is one partition scan on redb and one
/// token range on ScyllaDB.
const RECIPIENT_PAGE: usize = 500;

#[derive(Deserialize)]
struct DmChannel {
    id: Id<ChannelMarker>,
}

impl Round<'_> {
    /// DMs the consenting users of the held shards still to reach; `false` once the campaign
    /// was cancelled. A claim goes where the user's delivery is, if it has one (written
    /// under an earlier shard count, say).
    pub(super) async fn dms(&mut self) -> Result<bool, StorageError> {
        let store = &self.services.store;
        let campaign_id = self.campaign.id;
        let known: HashMap<u64, DmDelivery> = self
            .held
            .rows_by_owner(
                |p| store.dm_deliveries(campaign_id, Some(p)),
                |d: &DmDelivery| d.user_id,
            )
            .await?;
        let mut after = None;
        loop {
            let page = store.dm_recipients(after, RECIPIENT_PAGE).await?;
            for user_id in page.users {
                if !self.held.holds(user_id) {
                    continue;
                }
                let shard_id = known.get(&user_id).map_or_else(
                    || shard_of(user_id, self.held.counts.now),
                    |old| old.shard_id,
                );
                let now = Timestamp::now();
                let stored = known
                    .get(&user_id)
                    .map(|old| (old.state, old.claimed_by.as_str(), old.at));
                let Some(replacing) = self.claim_over(stored, now) else {
                    continue;
                };
                if !self.still_active().await? {
                    return Ok(false);
                }
                let claim = DmDelivery {
                    campaign_id: self.campaign.id,
                    shard_id,
                    user_id,
                    state: DeliveryState::Claimed,
                    reason: None,
                    claimed_by: self.me.clone(),
                    at: now,
                    channel_id: None,
                    message_id: None,
                };
                if !store
                    .claim_dm_delivery(&claim, replacing.as_deref())
                    .await?
                {
                    continue;
                }
                let interrupted = replacing.is_some_and(|old| old != self.me);
                self.send_dm(claim, interrupted).await?;
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(true),
            }
        }
    }

    /// Sends the campaign to a claimed user (or finds it sent), and records the outcome.
    async fn send_dm(&self, mut claim: DmDelivery, interrupted: bool) -> Result<(), StorageError> {
        let services = self.services;
        // At send time, not only when the page was read: a withdrawal is honoured at once.
        let flags = services.store.privacy_flags(claim.user_id).await?;
        let user = Id::<UserMarker>::new_checked(claim.user_id);
        let Some(user) = user.filter(|_| flags.may_announce()) else {
            return self
                .decide_dm(claim, DeliveryState::Skipped, "no_consent", None)
                .await;
        };
        // Sent by half the lease or not at all, as guild deliveries are.
        let give_up_at = tokio::time::Instant::now() + services.runtime.timer_lease / 2;
        let open = services
            .replies
            .http()
            .create_private_channel(user)
            .try_into_request()
            .expect("a DM channel request is valid");
        let opened = services
            .replies
            .rest()
            .send_background("create_dm", open, give_up_at)
            .await
            .and_then(|reply| reply.model::<DmChannel>());
        let channel = match opened {
            Ok(channel) => channel.id,
            Err(err) => return self.not_sent(claim, err).await,
        };
        claim.channel_id = Some(channel.get());
        let sent = match self.recover_or_post(channel, interrupted, give_up_at).await {
            Posting::Settled(state, reason, message) => {
                return self.decide_dm(claim, state, reason, message).await;
            }
            Posting::Posted(sent) => sent.and_then(|reply| reply.model::<Posted>()),
        };
        match sent {
            Ok(posted) => {
                self.decide_dm(claim, DeliveryState::Sent, "posted", Some(posted.id.get()))
                    .await
            }
            Err(err) => self.not_sent(claim, err).await,
        }
    }

    /// Records why a DM was not sent; a request whose turn did not come leaves the claim
    /// ours, for the next round.
    async fn not_sent(&self, claim: DmDelivery, err: RestError) -> Result<(), StorageError> {
        match err {
            RestError::Timeout | RestError::QueueFull | RestError::HeldBack(_) => Ok(()),
            // The user does not accept DMs from the bot (50007): their choice, not a fault.
            RestError::Status { status: 403, .. } => {
                self.decide_dm(claim, DeliveryState::Skipped, "dm_closed", None)
                    .await
            }
            err => {
                tracing::warn!(user_id = claim.user_id, error = %err, "announcement DM not delivered");
                self.decide_dm(claim, DeliveryState::Failed, "discord_error", None)
                    .await
            }
        }
    }

    async fn decide_dm(
        &self,
        mut claim: DmDelivery,
        state: DeliveryState,
        reason: &'static str,
        message_id: Option<u64>,
    ) -> Result<(), StorageError> {
        claim.state = state;
        claim.reason = (state != DeliveryState::Sent).then(|| reason.to_owned());
        claim.message_id = message_id;
        claim.at = Timestamp::now();
        if self.services.store.finish_dm_delivery(&claim).await? {
            counter!(ANNOUNCEMENT_DMS, "outcome" => state.label(), "reason" => reason).increment(1);
        }
        Ok(())
    }
}
