//! Service announcements: the operators' campaigns, delivered by the node that runs each
//! opted-in guild (`campaigns.rs`) and, by DM, by the node that runs each consenting user's
//! shard (`dms.rs`), and guild admins' own scheduled announcements, a feature of the guild
//! actor (`schedules.rs`).

mod campaigns;
mod dms;
mod schedules;

pub(crate) use campaigns::{DELIVERY_OUTCOMES, HeldShards, deliver_round, index_opt_in};
pub(crate) use dms::DM_OUTCOMES;
pub(crate) use schedules::{SEND_OUTCOMES, Schedules};
