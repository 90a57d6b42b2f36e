//! Lease and fencing rules, shared by both backends so they cannot drift apart.

use std::time::Duration;

use crate::{Lease, StorageError, Timestamp};

/// The lease `holder` gets when asking at `now`, given what is stored.
pub(crate) fn acquire(
    current: Option<&Lease>,
    name: &str,
    holder: u64,
    now: Timestamp,
    ttl: Duration,
) -> Result<Lease, StorageError> {
    let epoch = match current {
        None => 1,
        Some(lease) if lease.expires_at <= now => lease.epoch + 1,
        Some(lease) if lease.holder == holder => lease.epoch,
        Some(lease) => {
            return Err(StorageError::LeaseHeld {
                name: name.to_owned(),
                holder: lease.holder,
                epoch: lease.epoch,
            });
        }
    };
    Ok(Lease {
        name: name.to_owned(),
        holder,
        epoch,
        expires_at: now.saturating_add(ttl),
    })
}

/// The extended lease, if `holder` still holds it with `epoch` at `now`.
pub(crate) fn renew(
    current: Option<&Lease>,
    name: &str,
    holder: u64,
    epoch: u64,
    now: Timestamp,
    ttl: Duration,
) -> Result<Lease, StorageError> {
    match current {
        Some(lease) if lease.holder == holder && lease.epoch == epoch && lease.expires_at > now => {
            Ok(Lease {
                name: name.to_owned(),
                holder,
                epoch,
                expires_at: now.saturating_add(ttl),
            })
        }
        other => Err(StorageError::Fenced {
            presented: epoch,
            // A lapsed lease of the same epoch fences too: someone may take it any moment.
            current: other.map_or(0, |lease| lease.epoch.max(epoch + 1)),
        }),
    }
}

/// The released lease, or `None` when `holder` does not hold it (a no-op).
pub(crate) fn release(current: Option<&Lease>, holder: u64, epoch: u64) -> Option<Lease> {
    current
        .filter(|lease| lease.holder == holder && lease.epoch == epoch)
        .map(|lease| Lease {
            expires_at: Timestamp(0),
            ..lease.clone()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    #[test]
    fn holders_epochs_and_lapses() {
        let t0 = Timestamp(1_000_000);
        let a = acquire(None, "leader", 1, t0, TTL).unwrap();
        assert_eq!((a.holder, a.epoch), (1, 1));
        // Same holder re-acquiring keeps its epoch; another holder is refused while it runs.
        assert_eq!(acquire(Some(&a), "leader", 1, t0, TTL).unwrap().epoch, 1);
        assert!(matches!(
            acquire(
                Some(&a),
                "leader",
                2,
                t0.saturating_add(Duration::from_secs(9)),
                TTL
            ),
            Err(StorageError::LeaseHeld {
                holder: 1,
                epoch: 1,
                ..
            })
        ));
        // After the lapse the next holder gets a larger epoch, and the old one is fenced.
        let later = t0.saturating_add(TTL);
        let b = acquire(Some(&a), "leader", 2, later, TTL).unwrap();
        assert_eq!((b.holder, b.epoch), (2, 2));
        assert!(matches!(
            renew(Some(&b), "leader", 1, 1, later, TTL),
            Err(StorageError::Fenced {
                presented: 1,
                current: 2
            })
        ));
        assert_eq!(
            renew(Some(&b), "leader", 2, 2, later, TTL).unwrap().epoch,
            2
        );
        // Release keeps the epoch so the successor still moves forward.
        let released = release(Some(&b), 2, 2).unwrap();
        assert_eq!(released.expires_at, Timestamp(0));
        assert_eq!(
            acquire(Some(&released), "leader", 1, later, TTL)
                .unwrap()
                .epoch,
            3
        );
        assert_eq!(release(Some(&b), 1, 2), None);
    }
}
