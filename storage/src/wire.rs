//! Storage errors in a form that crosses a process boundary: a node using the coordinator's
//! store over gRPC must see the same `Conflict`, `Fenced` or `LeaseHeld` a local caller would.

use serde::{Deserialize, Serialize};

use crate::StorageError;

/// Why a promo code is refused; the backends use only these.
const PROMO_REJECTIONS: [&str; 4] = [
    "unknown code",
    "expired",
    "exhausted",
    "already redeemed by this user",
];
/// Kinds of [`StorageError::Unavailable`].
const UNAVAILABLE_KINDS: [&str; 4] = ["timeout", "overloaded", "unavailable", "remote"];

/// A [`StorageError`] that can be serialised. Failures local to the serving process (a
/// corrupt row, redb, i/o) arrive as `Unavailable`: the caller cannot act on their details.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum WireError {
    Conflict {
        expected: u64,
        current: u64,
    },
    NotFound {
        what: String,
    },
    LeaseHeld {
        name: String,
        holder: u64,
        epoch: u64,
    },
    Fenced {
        presented: u64,
        current: u64,
    },
    PromoRejected {
        code: String,
        reason: String,
    },
    Invalid {
        message: String,
    },
    QueueFull,
    Unavailable {
        kind: String,
        attempts: u32,
        message: String,
    },
}

impl From<&StorageError> for WireError {
    fn from(err: &StorageError) -> Self {
        match err {
            StorageError::Conflict { expected, current } => Self::Conflict {
                expected: *expected,
                current: *current,
            },
            StorageError::NotFound(what) => Self::NotFound { what: what.clone() },
            StorageError::LeaseHeld {
                name,
                holder,
                epoch,
            } => Self::LeaseHeld {
                name: name.clone(),
                holder: *holder,
                epoch: *epoch,
            },
            StorageError::Fenced { presented, current } => Self::Fenced {
                presented: *presented,
                current: *current,
            },
            StorageError::PromoRejected { code, reason } => Self::PromoRejected {
                code: code.clone(),
                reason: (*reason).to_owned(),
            },
            StorageError::Invalid(message) => Self::Invalid {
                message: message.clone(),
            },
            StorageError::QueueFull => Self::QueueFull,
            StorageError::Unavailable {
                kind,
                attempts,
                message,
            } => Self::Unavailable {
                kind: (*kind).to_owned(),
                attempts: *attempts,
                message: message.clone(),
            },
            other => Self::Unavailable {
                kind: "remote".to_owned(),
                attempts: 1,
                message: other.to_string(),
            },
        }
    }
}

impl From<WireError> for StorageError {
    fn from(err: WireError) -> Self {
        let known = |list: &[&'static str], value: &str, fallback: &'static str| {
            list.iter()
                .copied()
                .find(|known| *known == value)
                .unwrap_or(fallback)
        };
        match err {
            WireError::Conflict { expected, current } => Self::Conflict { expected, current },
            WireError::NotFound { what } => Self::NotFound(what),
            WireError::LeaseHeld {
                name,
                holder,
                epoch,
            } => Self::LeaseHeld {
                name,
                holder,
                epoch,
            },
            WireError::Fenced { presented, current } => Self::Fenced { presented, current },
            WireError::PromoRejected { code, reason } => Self::PromoRejected {
                code,
                reason: known(&PROMO_REJECTIONS, &reason, "rejected"),
            },
            WireError::Invalid { message } => Self::Invalid(message),
            WireError::QueueFull => Self::QueueFull,
            WireError::Unavailable {
                kind,
                attempts,
                message,
            } => Self::Unavailable {
                kind: known(&UNAVAILABLE_KINDS, &kind, "remote"),
                attempts,
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_a_caller_acts_on_survive_the_trip() {
        let errors = [
            StorageError::Conflict {
                expected: 1,
                current: 2,
            },
            StorageError::NotFound("guild 7".into()),
            StorageError::LeaseHeld {
                name: "coordinator".into(),
                holder: 3,
                epoch: 4,
            },
            StorageError::Fenced {
                presented: 1,
                current: 2,
            },
            StorageError::PromoRejected {
                code: "X".into(),
                reason: "expired",
            },
            StorageError::Invalid("empty name".into()),
            StorageError::Unavailable {
                kind: "timeout",
                attempts: 3,
                message: "slow".into(),
            },
        ];
        for err in errors {
            let json = serde_json::to_string(&WireError::from(&err)).unwrap();
            let back = StorageError::from(serde_json::from_str::<WireError>(&json).unwrap());
            assert_eq!(back.to_string(), err.to_string());
        }
        let local = StorageError::Worker("panicked".into());
        assert!(StorageError::from(WireError::from(&local)).is_transient());
    }
}
