//! `protonn announce …`: the operators' service announcements. A campaign is stored here and
//! delivered by the nodes that run the opted-in guilds (`protonn_actors::announcements`), and
//! with `--dm` by DM to the users who consented to announcement DMs; this
//! command creates, follows and cancels campaigns in the store the config names (as
//! `protonn privacy` does); each change is audited under the account-level guild (0).

use anyhow::bail;
use clap::Subcommand;
use protonn_storage::{
    Campaign, CampaignProgress, StorageError, Store, Timestamp, start_campaign, stop_campaign,
};

use crate::Config;
use crate::privacy_ops::operator_store;

#[derive(Debug, Subcommand)]
pub(crate) enum AnnounceCommand {
    /// Starts a campaign: every guild that opted in (its announcement channel) gets MESSAGE
    /// once, from the node that runs it, in the REST lane below replies.
    Create {
        /// The text, up to 1,850 characters.
        #[arg(long)]
        message: String,
        /// A one-line title shown in bold above it.
        #[arg(long)]
        title: Option<String>,
        /// Also send it by DM to every user who consented to announcement DMs (and did not
        /// object or restrict processing), checked again just before each DM.
        #[arg(long)]
        dm: bool,
        /// Coordinator address, repeatable; `cluster.coordinators` when omitted.
        #[arg(long = "coordinator")]
        coordinators: Vec<String>,
    },
    /// Progress of campaign ID (sent, in flight, skipped and failed by reason), or of every
    /// campaign.
    Status {
        id: Option<u64>,
        #[arg(long = "coordinator")]
        coordinators: Vec<String>,
    },
    /// Stops campaign ID: no node starts another delivery of it.
    Cancel {
        id: u64,
        #[arg(long = "coordinator")]
        coordinators: Vec<String>,
    },
}

pub(crate) async fn run(config: Config, command: AnnounceCommand) -> anyhow::Result<()> {
    match command {
        AnnounceCommand::Create {
            message,
            title,
            dm,
            coordinators: c,
        } => {
            let store = operator_store(&config, c).await?;
            let campaign = create(store.as_ref(), message, title, dm, Timestamp::now()).await?;
            println!(
                "campaign {} created; `protonn announce status {}` follows it",
                campaign.id, campaign.id
            );
        }
        AnnounceCommand::Status {
            id,
            coordinators: c,
        } => {
            let store = operator_store(&config, c).await?;
            print!("{}", status(store.as_ref(), id).await?);
        }
        AnnounceCommand::Cancel {
            id,
            coordinators: c,
        } => {
            let store = operator_store(&config, c).await?;
            let campaign = cancel(store.as_ref(), id, Timestamp::now()).await?;
            println!(
                "campaign {} cancelled at {} ms",
                campaign.id,
                campaign.cancelled_at.map_or(0, |at| at.0)
            );
        }
    }
    Ok(())
}

/// Starts a campaign; bad input is refused with the reason and nothing stored.
pub(crate) async fn create(
    store: &dyn Store,
    message: String,
    title: Option<String>,
    dm: bool,
    now: Timestamp,
) -> anyhow::Result<Campaign> {
    match start_campaign(store, &message, title.as_deref(), dm, now, 0).await {
        Ok(campaign) => Ok(campaign),
        Err(StorageError::Invalid(message)) => bail!("{message}"),
        Err(StorageError::Conflict { .. }) => {
            bail!("a campaign was created in the same millisecond; try again")
        }
        Err(err) => Err(err.into()),
    }
}

pub(crate) async fn cancel(store: &dyn Store, id: u64, now: Timestamp) -> anyhow::Result<Campaign> {
    match stop_campaign(store, id, now, 0).await {
        Ok(campaign) => Ok(campaign),
        Err(StorageError::NotFound(_)) => bail!("no campaign {id}"),
        Err(err) => Err(err.into()),
    }
}

/// One campaign's progress, or one line per campaign.
pub(crate) async fn status(store: &dyn Store, id: Option<u64>) -> anyhow::Result<String> {
    let campaigns = store.campaigns().await?;
    let shown: Vec<&Campaign> = match id {
        Some(id) => match campaigns.iter().find(|c| c.id == id) {
            Some(campaign) => vec![campaign],
            None => bail!("no campaign {id}"),
        },
        None => campaigns.iter().collect(),
    };
    if shown.is_empty() {
        return Ok("no campaigns\n".to_owned());
    }
    let mut out = String::new();
    for campaign in shown {
        let progress = CampaignProgress::of(&store.deliveries(campaign.id, None).await?);
        let state = match campaign.cancelled_at {
            Some(at) => format!("cancelled at {} ms", at.0),
            None => "active".to_owned(),
        };
        out.push_str(&format!(
            "campaign {} ({state}): {}\n  {}\n",
            campaign.id,
            campaign.title.as_deref().unwrap_or("(no title)"),
            progress.summary()
        ));
        if campaign.dm {
            let dms = CampaignProgress::of_dms(&store.dm_deliveries(campaign.id, None).await?);
            out.push_str(&format!("  DMs: {}\n", dms.summary()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use protonn_storage::AnnouncementRepo;

    use super::*;

    #[tokio::test]
    async fn a_campaign_is_created_followed_and_cancelled_and_bad_input_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = protonn_storage::EmbeddedStore::open(dir.path()).unwrap();
        let now = Timestamp::now();
        assert_eq!(status(&store, None).await.unwrap(), "no campaigns\n");
        let err = create(&store, " ".into(), None, false, now)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("1 to 1850 characters"), "{err}");
        assert!(store.campaigns().await.unwrap().is_empty());

        let campaign = create(&store, "Hello".into(), Some("News".into()), false, now)
            .await
            .unwrap();
        assert_eq!(campaign.id, now.0);
        let text = status(&store, Some(now.0)).await.unwrap();
        assert_eq!(
            text,
            format!(
                "campaign {} (active): News\n  sent 0, in flight 0, skipped 0, failed 0\n",
                now.0
            )
        );
        assert!(status(&store, Some(now.0 + 1)).await.is_err());
        let later = Timestamp(now.0 + 2);
        cancel(&store, now.0, later).await.unwrap();
        let listed = status(&store, None).await.unwrap();
        assert!(
            listed.contains(&format!("cancelled at {} ms", later.0)),
            "{listed}"
        );
        assert!(cancel(&store, now.0 + 1, later).await.is_err());
        let actions: Vec<String> =
            protonn_storage::AuditRepo::list_audit(&store, 0, now, Timestamp(now.0 + 10), 10)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.action)
                .collect();
        assert_eq!(actions, ["announce.create", "announce.cancel"]);
    }
}
