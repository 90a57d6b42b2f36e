//! Service announcements: the operators' campaigns, delivered by the node that runs each
//! opted-in guild (`campaigns.rs`).

mod campaigns;

pub(crate) use campaigns::{DELIVERY_OUTCOMES, deliver_round, held_shards};
