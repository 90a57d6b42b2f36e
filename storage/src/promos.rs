//! Operators create promo codes (`protonn promo create`, the dashboard's `/admin/promos`): one
//! set of rules for both, and each creation audited under the account-level audit guild (0)
//! with the operator who made it (0 from the command line).

use std::time::Duration;

use crate::{AuditEntry, AuditRepo, BillingRepo, MAX_SLOTS, PromoCode, StorageError, Timestamp};

/// What an operator asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPromo {
    pub code: String,
    /// Premium days one redemption grants, from the day it is redeemed.
    pub days: u32,
    pub slots: u32,
    /// Redemptions in total (each user once).
    pub limit: u32,
    /// The code can be redeemed for this long from now.
    pub valid_for: Duration,
    pub new_users_only: bool,
}

/// Codes are what users type: 3 to 64 letters, digits, `-` or `_`, kept upper-case.
pub fn normalise_code(code: &str) -> Result<String, String> {
    let code = code.trim().to_ascii_uppercase();
    if !(3..=64).contains(&code.len())
        || !code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "a promo code is 3 to 64 letters, digits, '-' or '_', got {code:?}"
        ));
    }
    Ok(code)
}

/// Creates the code and its audit entry; [`StorageError::Invalid`] with the reason (nothing
/// written) if it exists or the numbers grant nothing.
pub async fn create_promo_code<S: BillingRepo + AuditRepo + ?Sized>(
    store: &S,
    new: &NewPromo,
    operator_id: u64,
    now: Timestamp,
) -> Result<PromoCode, StorageError> {
    let code = normalise_code(&new.code).map_err(StorageError::Invalid)?;
    if new.days == 0 || new.slots == 0 || new.limit == 0 || new.valid_for.is_zero() {
        return Err(StorageError::Invalid(
            "a promo code grants at least one slot for one day, to at least one user, for some time"
                .into(),
        ));
    }
    if new.slots > MAX_SLOTS {
        return Err(StorageError::Invalid(format!(
            "at most {MAX_SLOTS} slots per code"
        )));
    }
    let promo = PromoCode {
        code: code.clone(),
        percent_off: 0,
        max_redemptions: new.limit,
        expires_at: now.saturating_add(new.valid_for),
        premium_days: new.days,
        slots: new.slots,
        new_users_only: new.new_users_only,
    };
    store.create_promo(&promo).await?;
    store
        .append_audit(&[AuditEntry {
            guild_id: 0,
            at: now,
            // Codes are unique: the code names the entry.
            id: code.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            }),
            actor_id: operator_id,
            target_id: None,
            action: "promo.create".into(),
            details: serde_json::json!({
                "code": code,
                "days": new.days,
                "slots": new.slots,
                "limit": new.limit,
                "expires_at": promo.expires_at.0,
                "new_users_only": new.new_users_only,
            })
            .to_string(),
        }])
        .await?;
    Ok(promo)
}

#[cfg(test)]
mod tests {

    use super::*;

    #[tokio::test]
    async fn operators_create_valid_codes_once_and_each_is_audited() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::EmbeddedStore::open(dir.path()).unwrap();
        let now = Timestamp::now();
        let new = NewPromo {
            code: " launch-2026 ".into(),
            days: 30,
            slots: 1,
            limit: 100,
            valid_for: Duration::from_secs(86_400),
            new_users_only: true,
        };
        let promo = create_promo_code(&store, &new, 7, now).await.unwrap();
        assert_eq!(promo.code, "LAUNCH-2026");
        assert_eq!(store.promo("LAUNCH-2026").await.unwrap(), Some((promo, 0)));
        let again = create_promo_code(&store, &new, 7, now)
            .await
            .unwrap_err()
            .to_string();
        assert!(again.contains("already exists"), "{again}");
        for bad in [
            NewPromo {
                code: "x".into(),
                ..new.clone()
            },
            NewPromo {
                code: "no spaces".into(),
                ..new.clone()
            },
            NewPromo {
                code: "OTHER".into(),
                days: 0,
                ..new.clone()
            },
            NewPromo {
                code: "OTHER".into(),
                limit: 0,
                ..new.clone()
            },
        ] {
            assert!(
                create_promo_code(&store, &bad, 7, now).await.is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(store.promo("OTHER").await.unwrap(), None);
        let audit = store
            .list_audit(0, Timestamp(0), Timestamp(u64::MAX), 10)
            .await
            .unwrap();
        assert_eq!(audit.len(), 1);
        assert_eq!(audit[0].action, "promo.create");
        assert!(audit[0].details.contains("LAUNCH-2026"));
        assert_eq!(audit[0].actor_id, 7, "the operator who made it");
    }
}
