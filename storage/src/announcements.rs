//! Service announcements: the operators' campaigns, the guilds that opted in to them (indexed
//! by shard, so the node that runs a shard reads one partition to find its guilds), and one
//! delivery record per (campaign, guild).
//!
//! A delivery is a one-decision write: a node *claims* a guild for a campaign (insert if
//! absent) before it sends, and records the outcome only while the claim is still its own.
//! So no two nodes send a campaign to one guild, and a claim left by a node that died between
//! the two is visible and resolved by a rule (the actors' `announcements` module), never
//! resent blindly.
//!
//! A campaign may also go by DM to every user whose stored privacy flags allow it
//! ([`crate::PrivacyFlags::may_announce`]: consent given, no objection or restriction), with one
//! [`DmDelivery`] per (campaign, user) claimed and decided the same way. Those name the user:
//! they are in the user's privacy index (export, erasure). Campaigns and every delivery record
//! are kept [`Retention::campaigns`] from the campaign's creation (swept on redb, TTLs on
//! ScyllaDB).
//!
//! Guilds' own scheduled announcements are rows of their guild (`schedules.rs`).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{AnnounceSchedule, Retention, StorageError, Timestamp};

/// Longest campaign text: Discord's 2,000 characters, less room for the campaign's marker.
pub const CAMPAIGN_MESSAGE_MAX_CHARS: usize = 1_850;
/// Longest campaign title (shown in bold above the text).
pub const CAMPAIGN_TITLE_MAX_CHARS: usize = 100;

/// An operator's announcement to every guild that opted in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    /// Unique; chosen by its creator (the creation time in ms, so ids sort by age).
    pub id: u64,
    #[serde(default)]
    pub title: Option<String>,
    pub message: String,
    pub created_at: Timestamp,
    /// Once set, no node starts another delivery of it.
    #[serde(default)]
    pub cancelled_at: Option<Timestamp>,
    /// Also sent by DM to every user who consented to announcement DMs.
    #[serde(default)]
    pub dm: bool,
}

/// When a campaign and its delivery records go.
pub(crate) fn campaign_expiry(campaign: &Campaign, retention: &Retention) -> Timestamp {
    campaign.created_at.saturating_add(retention.campaigns)
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// A node is sending it (or died doing so).
    Claimed,
    Sent,
    Skipped,
    Failed,
}

impl DeliveryState {
    pub fn label(self) -> &'static str {
        match self {
            Self::Claimed => "claimed",
            Self::Sent => "sent",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
        }
    }
}

/// One campaign's delivery to one guild.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub campaign_id: u64,
    /// The guild's shard: the node that runs it reads the deliveries of its shards.
    pub shard_id: u32,
    pub guild_id: u64,
    pub channel_id: u64,
    pub state: DeliveryState,
    /// Why it was skipped or failed: one of a few fixed words (a metric label too).
    #[serde(default)]
    pub reason: Option<String>,
    /// The node (claimant name) that claimed it.
    pub claimed_by: String,
    /// When it was claimed or, once decided, when it was.
    pub at: Timestamp,
    /// The message it posted, once sent.
    #[serde(default)]
    pub message_id: Option<u64>,
}

/// One campaign's DM to one user who consented to announcement DMs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmDelivery {
    pub campaign_id: u64,
    /// The user's shard by Discord's formula ([`crate::shard_of`] of the user id): the node
    /// that runs it sends the DM, so users are spread over the nodes as guilds are.
    pub shard_id: u32,
    pub user_id: u64,
    pub state: DeliveryState,
    /// Why it was skipped or failed: one of a few fixed words (a metric label too).
    #[serde(default)]
    pub reason: Option<String>,
    /// The node (claimant name) that claimed it.
    pub claimed_by: String,
    /// When it was claimed or, once decided, when it was.
    pub at: Timestamp,
    /// The DM channel, once opened.
    #[serde(default)]
    pub channel_id: Option<u64>,
    /// The message it sent, once sent.
    #[serde(default)]
    pub message_id: Option<u64>,
}

/// Users who may get announcement DMs, a page at a time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientPage {
    /// The users of this page whose flags allow announcement DMs.
    pub users: Vec<u64>,
    /// Where the next page starts (`after`); `None` after the last page.
    pub next: Option<u64>,
}

/// Campaigns, opt-ins and deliveries.
#[async_trait]
pub trait AnnouncementRepo: Send + Sync + 'static {
    /// Records that `guild_id` (of `shard_id`) takes announcements in `channel_id`, or no
    /// longer does (`None`).
    async fn set_announce_opt_in(
        &self,
        shard_id: u32,
        guild_id: u64,
        channel_id: Option<u64>,
    ) -> Result<(), StorageError>;

    /// The guilds of `shard_id` that opted in, with their channels, by guild id.
    async fn announce_opt_ins(&self, shard_id: u32) -> Result<Vec<(u64, u64)>, StorageError>;

    /// Stores a new campaign; [`StorageError::Conflict`] if its id is taken.
    async fn create_campaign(&self, campaign: &Campaign) -> Result<(), StorageError>;

    /// Every campaign, newest first.
    async fn campaigns(&self) -> Result<Vec<Campaign>, StorageError>;

    /// Marks a campaign cancelled at `at` (once: a second cancel keeps the first time);
    /// [`StorageError::NotFound`] if there is no such campaign.
    async fn cancel_campaign(&self, id: u64, at: Timestamp) -> Result<Campaign, StorageError>;

    /// Claims a guild for a campaign: stores `delivery` (state `Claimed`) if the guild has
    /// no delivery of it yet, or, with `replacing`, if its delivery is still a claim by that
    /// claimant (taking over from a node that died); whether this call got it.
    /// [`StorageError::NotFound`] if there is no such campaign (or it is past retention).
    async fn claim_delivery(
        &self,
        delivery: &Delivery,
        replacing: Option<&str>,
    ) -> Result<bool, StorageError>;

    /// Records the outcome (`Sent`, `Skipped`, `Failed`) of a delivery its claimant holds;
    /// `false` (and nothing changed) if it is not a claim of `delivery.claimed_by` any more.
    async fn finish_delivery(&self, delivery: &Delivery) -> Result<bool, StorageError>;

    /// The campaign's deliveries to guilds of `shard_id` (of every shard with `None`), by
    /// shard and guild id.
    async fn deliveries(
        &self,
        campaign_id: u64,
        shard_id: Option<u32>,
    ) -> Result<Vec<Delivery>, StorageError>;

    /// A page of the users whose stored privacy flags allow announcement DMs, reading at most
    /// `limit` users' flags after `after` (the previous page's `next`; `None` for the first).
    /// The order is the backend's (user id on redb, token on ScyllaDB): only users who ever
    /// set a choice have flags, so a campaign pages through them without reading anyone else.
    async fn dm_recipients(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<RecipientPage, StorageError>;

    /// Claims a user's DM of a campaign, as [`AnnouncementRepo::claim_delivery`] a guild;
    /// [`StorageError::NotFound`] if there is no such campaign.
    async fn claim_dm_delivery(
        &self,
        delivery: &DmDelivery,
        replacing: Option<&str>,
    ) -> Result<bool, StorageError>;

    /// Records the outcome of a DM delivery its claimant holds, as
    /// [`AnnouncementRepo::finish_delivery`].
    async fn finish_dm_delivery(&self, delivery: &DmDelivery) -> Result<bool, StorageError>;

    /// The campaign's DM deliveries to users of `shard_id` (of every shard with `None`), by
    /// shard and user id.
    async fn dm_deliveries(
        &self,
        campaign_id: u64,
        shard_id: Option<u32>,
    ) -> Result<Vec<DmDelivery>, StorageError>;

    /// Stores a guild's scheduled announcement, replacing the one of the same id.
    async fn put_announce_schedule(&self, schedule: &AnnounceSchedule) -> Result<(), StorageError>;

    /// The guild's scheduled announcements by id.
    async fn announce_schedules(
        &self,
        guild_id: u64,
    ) -> Result<Vec<AnnounceSchedule>, StorageError>;

    /// Deletes one scheduled announcement; whether it existed.
    async fn delete_announce_schedule(
        &self,
        guild_id: u64,
        schedule_id: u64,
    ) -> Result<bool, StorageError>;
}

pub(crate) fn check_campaign(campaign: &Campaign) -> Result<(), StorageError> {
    let chars = campaign.message.trim().chars().count();
    if chars == 0 || chars > CAMPAIGN_MESSAGE_MAX_CHARS {
        return Err(StorageError::Invalid(format!(
            "an announcement has 1 to {CAMPAIGN_MESSAGE_MAX_CHARS} characters"
        )));
    }
    if let Some(title) = &campaign.title {
        let chars = title.trim().chars().count();
        if chars == 0 || chars > CAMPAIGN_TITLE_MAX_CHARS || title.contains('\n') {
            return Err(StorageError::Invalid(format!(
                "an announcement title is one line of 1 to {CAMPAIGN_TITLE_MAX_CHARS} characters"
            )));
        }
    }
    if campaign.id == 0 {
        return Err(StorageError::Invalid("a campaign id is not 0".into()));
    }
    Ok(())
}

/// A DM delivery's entry in its user's privacy index.
pub(crate) fn dm_ref(delivery: &DmDelivery) -> crate::row_ref::RowRef {
    crate::row_ref::RowRef::AnnouncementDm {
        campaign: delivery.campaign_id,
        shard: delivery.shard_id,
        user: delivery.user_id,
    }
}

/// What claims and outcomes are checked by, for guild and DM deliveries alike.
pub(crate) trait Decision {
    fn state(&self) -> DeliveryState;
    fn reason(&self) -> Option<&str>;
    fn claimed_by(&self) -> &str;
    /// Campaign, shard and recipient (guild or user): the delivery's row key.
    fn key(&self) -> (u64, u32, u64);
}

impl Decision for Delivery {
    fn state(&self) -> DeliveryState {
        self.state
    }
    fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
    fn claimed_by(&self) -> &str {
        &self.claimed_by
    }
    fn key(&self) -> (u64, u32, u64) {
        (self.campaign_id, self.shard_id, self.guild_id)
    }
}

impl Decision for DmDelivery {
    fn state(&self) -> DeliveryState {
        self.state
    }
    fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
    fn claimed_by(&self) -> &str {
        &self.claimed_by
    }
    fn key(&self) -> (u64, u32, u64) {
        (self.campaign_id, self.shard_id, self.user_id)
    }
}

pub(crate) fn check_claim(delivery: &impl Decision) -> Result<(), StorageError> {
    if delivery.state() != DeliveryState::Claimed || delivery.claimed_by().is_empty() {
        return Err(StorageError::Invalid(
            "a delivery is claimed by a named claimant".into(),
        ));
    }
    Ok(())
}

pub(crate) fn check_outcome(delivery: &impl Decision) -> Result<(), StorageError> {
    if delivery.state() == DeliveryState::Claimed {
        return Err(StorageError::Invalid(
            "a delivery's outcome is sent, skipped or failed".into(),
        ));
    }
    Ok(())
}

/// How far a campaign got: deliveries by state, and skips and failures by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignProgress {
    pub sent: u64,
    /// Claimed and not decided yet: being sent, or left by a node that died (resolved by the
    /// guild's next owner).
    pub in_flight: u64,
    pub skipped: std::collections::BTreeMap<String, u64>,
    pub failed: std::collections::BTreeMap<String, u64>,
}

impl CampaignProgress {
    /// The progress of a campaign's deliveries to guilds.
    pub fn of(deliveries: &[Delivery]) -> Self {
        Self::of_decisions(deliveries)
    }

    /// The progress of a campaign's DMs.
    pub fn of_dms(deliveries: &[DmDelivery]) -> Self {
        Self::of_decisions(deliveries)
    }

    fn of_decisions<D: Decision>(deliveries: &[D]) -> Self {
        let mut progress = Self::default();
        for delivery in deliveries {
            let reason = || delivery.reason().unwrap_or("unknown").to_owned();
            match delivery.state() {
                DeliveryState::Claimed => progress.in_flight += 1,
                DeliveryState::Sent => progress.sent += 1,
                DeliveryState::Skipped => *progress.skipped.entry(reason()).or_default() += 1,
                DeliveryState::Failed => *progress.failed.entry(reason()).or_default() += 1,
            }
        }
        progress
    }

    /// `sent 3, in flight 0, skipped 1 (channel_gone: 1), failed 0`.
    pub fn summary(&self) -> String {
        let by_reason = |counts: &std::collections::BTreeMap<String, u64>| {
            let total: u64 = counts.values().sum();
            if counts.is_empty() {
                return total.to_string();
            }
            let reasons: Vec<String> = counts.iter().map(|(r, n)| format!("{r}: {n}")).collect();
            format!("{total} ({})", reasons.join(", "))
        };
        format!(
            "sent {}, in flight {}, skipped {}, failed {}",
            self.sent,
            self.in_flight,
            by_reason(&self.skipped),
            by_reason(&self.failed)
        )
    }
}

/// Where announcement changes are audited: the account-level audit guild (0), which no
/// Discord guild has.
const OPERATOR_AUDIT_GUILD: u64 = 0;

/// Starts a campaign (its id: `now` in ms; by DM too with `dm`) and audits it as
/// `announce.create` by `actor_id` (0 for the CLI); refused input stores nothing. What the CLI
/// and the admin page both do.
pub async fn start_campaign(
    store: &dyn crate::Store,
    message: &str,
    title: Option<&str>,
    dm: bool,
    now: Timestamp,
    actor_id: u64,
) -> Result<Campaign, StorageError> {
    let campaign = Campaign {
        id: now.0,
        title: title.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()),
        message: message.trim().to_owned(),
        created_at: now,
        cancelled_at: None,
        dm,
    };
    store.create_campaign(&campaign).await?;
    audit_campaign(store, &campaign, "announce.create", now, actor_id).await;
    Ok(campaign)
}

/// Cancels a campaign and audits it as `announce.cancel` by `actor_id`.
pub async fn stop_campaign(
    store: &dyn crate::Store,
    id: u64,
    now: Timestamp,
    actor_id: u64,
) -> Result<Campaign, StorageError> {
    let campaign = store.cancel_campaign(id, now).await?;
    audit_campaign(store, &campaign, "announce.cancel", now, actor_id).await;
    Ok(campaign)
}

async fn audit_campaign(
    store: &dyn crate::Store,
    campaign: &Campaign,
    action: &str,
    now: Timestamp,
    actor_id: u64,
) {
    let entry = crate::AuditEntry {
        guild_id: OPERATOR_AUDIT_GUILD,
        at: now,
        // One entry per campaign and action.
        id: campaign.id ^ (u64::from(action == "announce.cancel") << 63),
        actor_id,
        target_id: None,
        action: action.to_owned(),
        details: serde_json::json!({
            "campaign": campaign.id,
            "title": campaign.title,
            "dm": campaign.dm,
        })
        .to_string(),
    };
    // The change is made; only its record is missing, loudly.
    if let Err(err) = store.append_audit(&[entry]).await {
        tracing::error!(campaign = campaign.id, error = %err, "announcement change not audited");
    }
}
