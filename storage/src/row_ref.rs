//! References from an index (user refs, expiry) to the row they name. The embedded store
//! keys its indexes by a compact binary form ([`RowRef::bytes`]); ScyllaDB stores the JSON
//! ([`RowRef::json`]), which stays readable in `cqlsh`.

use serde::{Deserialize, Serialize};

use crate::StorageError;

/// A row that an index points at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "table", rename_all = "snake_case")]
pub(crate) enum RowRef {
    Audit {
        guild: u64,
        at: u64,
        id: u64,
    },
    Ticket {
        guild: u64,
        ticket: u64,
    },
    Transcript {
        guild: u64,
        ticket: u64,
        message: u64,
    },
    Workflow {
        guild: u64,
        workflow: u64,
    },
    Subscription {
        id: u64,
    },
    Redemption {
        code: String,
        user: u64,
    },
    Account {
        user: u64,
    },
    /// A guild's usage counters of one day (expiry only: they name no user).
    UsageDay {
        guild: u64,
        day: u32,
    },
    /// A moderation case (its moderator and its target).
    Case {
        guild: u64,
        number: u64,
    },
    /// What an automod rule in shadow mode would have done to a message.
    AutomodHit {
        guild: u64,
        message: u64,
        rule: String,
    },
    /// A durable timer that names users (a temporary ban's unban, a parked workflow run).
    Timer {
        guild: u64,
        id: String,
    },
    /// A payment-provider webhook event about the user.
    InboxEvent {
        id: String,
    },
    /// A workflow variable kept between runs (`user` 0: the server's own).
    WorkflowVariable {
        guild: u64,
        user: u64,
        name: String,
    },
    /// The kept trace of a workflow run.
    WorkflowRun {
        guild: u64,
        workflow: u64,
        slot: u32,
    },
    /// A campaign's DM to the user.
    AnnouncementDm {
        campaign: u64,
        shard: u32,
        user: u64,
    },
}

impl RowRef {
    /// One tag byte, then the key fields big-endian (the code of a redemption last, raw).
    pub(crate) fn bytes(&self) -> Vec<u8> {
        let (tag, numbers, tail): (u8, &[u64], &[u8]) = match self {
            Self::Audit { guild, at, id } => (1, &[*guild, *at, *id], &[]),
            Self::Ticket { guild, ticket } => (2, &[*guild, *ticket], &[]),
            Self::Transcript {
                guild,
                ticket,
                message,
            } => (3, &[*guild, *ticket, *message], &[]),
            Self::Workflow { guild, workflow } => (4, &[*guild, *workflow], &[]),
            Self::Subscription { id } => (5, &[*id], &[]),
            Self::Redemption { code, user } => (6, &[*user], code.as_bytes()),
            Self::Account { user } => (7, &[*user], &[]),
            Self::UsageDay { guild, day } => (8, &[*guild, u64::from(*day)], &[]),
            Self::Case { guild, number } => (9, &[*guild, *number], &[]),
            Self::AutomodHit {
                guild,
                message,
                rule,
            } => (10, &[*guild, *message], rule.as_bytes()),
            Self::Timer { guild, id } => (11, &[*guild], id.as_bytes()),
            Self::InboxEvent { id } => (12, &[], id.as_bytes()),
            Self::WorkflowVariable { guild, user, name } => (13, &[*guild, *user], name.as_bytes()),
            Self::WorkflowRun {
                guild,
                workflow,
                slot,
            } => (14, &[*guild, *workflow, u64::from(*slot)], &[]),
            Self::AnnouncementDm {
                campaign,
                shard,
                user,
            } => (16, &[*campaign, u64::from(*shard), *user], &[]),
        };
        let mut out = Vec::with_capacity(1 + 8 * numbers.len() + tail.len());
        out.push(tag);
        for n in numbers {
            out.extend_from_slice(&n.to_be_bytes());
        }
        out.extend_from_slice(tail);
        out
    }

    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, StorageError> {
        let bad = || StorageError::Invalid(format!("unreadable index entry {bytes:?}"));
        let (&tag, rest) = bytes.split_first().ok_or_else(bad)?;
        let n = |i: usize| -> Result<u64, StorageError> {
            let chunk = rest.get(8 * i..8 * i + 8).ok_or_else(bad)?;
            Ok(u64::from_be_bytes(chunk.try_into().map_err(|_| bad())?))
        };
        let exact = |count: usize| {
            if rest.len() == 8 * count {
                Ok(())
            } else {
                Err(bad())
            }
        };
        Ok(match tag {
            1 => {
                exact(3)?;
                Self::Audit {
                    guild: n(0)?,
                    at: n(1)?,
                    id: n(2)?,
                }
            }
            2 => {
                exact(2)?;
                Self::Ticket {
                    guild: n(0)?,
                    ticket: n(1)?,
                }
            }
            3 => {
                exact(3)?;
                Self::Transcript {
                    guild: n(0)?,
                    ticket: n(1)?,
                    message: n(2)?,
                }
            }
            4 => {
                exact(2)?;
                Self::Workflow {
                    guild: n(0)?,
                    workflow: n(1)?,
                }
            }
            5 => {
                exact(1)?;
                Self::Subscription { id: n(0)? }
            }
            6 => Self::Redemption {
                user: n(0)?,
                code: String::from_utf8(rest[8..].to_vec()).map_err(|_| bad())?,
            },
            7 => {
                exact(1)?;
                Self::Account { user: n(0)? }
            }
            8 => {
                exact(2)?;
                Self::UsageDay {
                    guild: n(0)?,
                    day: u32::try_from(n(1)?).map_err(|_| bad())?,
                }
            }
            9 => {
                exact(2)?;
                Self::Case {
                    guild: n(0)?,
                    number: n(1)?,
                }
            }
            10 => Self::AutomodHit {
                guild: n(0)?,
                message: n(1)?,
                rule: String::from_utf8(rest.get(16..).ok_or_else(bad)?.to_vec())
                    .map_err(|_| bad())?,
            },
            11 => Self::Timer {
                guild: n(0)?,
                id: String::from_utf8(rest.get(8..).ok_or_else(bad)?.to_vec())
                    .map_err(|_| bad())?,
            },
            12 => Self::InboxEvent {
                id: String::from_utf8(rest.to_vec()).map_err(|_| bad())?,
            },
            13 => Self::WorkflowVariable {
                guild: n(0)?,
                user: n(1)?,
                name: String::from_utf8(rest.get(16..).ok_or_else(bad)?.to_vec())
                    .map_err(|_| bad())?,
            },
            14 => {
                exact(3)?;
                Self::WorkflowRun {
                    guild: n(0)?,
                    workflow: n(1)?,
                    slot: u32::try_from(n(2)?).map_err(|_| bad())?,
                }
            }
            16 => {
                exact(3)?;
                Self::AnnouncementDm {
                    campaign: n(0)?,
                    shard: u32::try_from(n(1)?).map_err(|_| bad())?,
                    user: n(2)?,
                }
            }
            _ => return Err(bad()),
        })
    }

    pub(crate) fn json(&self) -> String {
        serde_json::to_string(self).expect("row refs serialise")
    }

    pub(crate) fn parse_json(text: &str) -> Result<Self, StorageError> {
        serde_json::from_str(text).map_err(|err| StorageError::corrupt("index entry", err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_encodings_round_trip() {
        let refs = [
            RowRef::Audit {
                guild: 1,
                at: u64::MAX,
                id: 3,
            },
            RowRef::Ticket {
                guild: 1,
                ticket: 2,
            },
            RowRef::Transcript {
                guild: 1,
                ticket: 2,
                message: 3,
            },
            RowRef::Workflow {
                guild: 1,
                workflow: 2,
            },
            RowRef::Subscription { id: 9 },
            RowRef::Redemption {
                code: "LAUNCH-ü".into(),
                user: 5,
            },
            RowRef::Redemption {
                code: String::new(),
                user: 5,
            },
            RowRef::Account { user: 7 },
            RowRef::UsageDay {
                guild: 1,
                day: u32::MAX,
            },
            RowRef::Case {
                guild: 1,
                number: 2,
            },
            RowRef::AutomodHit {
                guild: 1,
                message: 2,
                rule: "spam ü".into(),
            },
            RowRef::Timer {
                guild: 1,
                id: "unban:2".into(),
            },
            RowRef::InboxEvent {
                id: "evt_01h".into(),
            },
            RowRef::WorkflowVariable {
                guild: 1,
                user: 0,
                name: "visits ü".into(),
            },
            RowRef::WorkflowRun {
                guild: 1,
                workflow: 2,
                slot: 9,
            },
            RowRef::AnnouncementDm {
                campaign: 1,
                shard: 2,
                user: 3,
            },
        ];
        for row in refs {
            assert_eq!(RowRef::parse(&row.bytes()).unwrap(), row);
            assert_eq!(RowRef::parse_json(&row.json()).unwrap(), row);
        }
        assert!(RowRef::parse(&[]).is_err());
        assert!(RowRef::parse(&[1, 0, 0]).is_err());
        assert!(RowRef::parse(&[9]).is_err());
        assert!(RowRef::parse(&[6, 1]).is_err());
        assert!(RowRef::parse(&[10, 1]).is_err());
        assert!(RowRef::parse(&[11, 1]).is_err());
        assert!(RowRef::parse(&[13, 1]).is_err());
        assert!(RowRef::parse(&[14, 1]).is_err());
        assert!(RowRef::parse(&[16, 1]).is_err());
    }
}
