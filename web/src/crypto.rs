//! Random secrets, hashes, constant-time comparison and the sealing of Discord tokens.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

use crate::{Secret, WebError};

/// 256 random bits, URL-safe: session secrets, OAuth2 `state`, CSRF and idempotency keys
/// (the issue asks for at least 128).
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A random id (privacy request ids: unique across users).
pub(crate) fn random_id() -> u64 {
    let mut bytes = [0u8; 8];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    // Never 0, the id no request has.
    u64::from_le_bytes(bytes).max(1)
}

/// Hex SHA-256: what is stored of a secret the browser holds; the assets' version.
pub(crate) fn digest(data: impl AsRef<[u8]>) -> String {
    ring::digest::digest(&ring::digest::SHA256, data.as_ref())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Equality whose time does not depend on where the inputs differ.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Encrypts and authenticates Discord tokens for storage (ChaCha20-Poly1305, random nonce).
pub(crate) struct Sealer {
    key: LessSafeKey,
}

impl Sealer {
    pub(crate) fn new(key: &Secret) -> Result<Self, WebError> {
        let bytes = STANDARD
            .decode(key.expose().trim())
            .map_err(|_| WebError::Config("web.token_key is not base64".into()))?;
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .map_err(|_| WebError::Config("web.token_key must be 32 bytes".into()))?;
        Ok(Self {
            key: LessSafeKey::new(key),
        })
    }

    /// `plain` sealed and bound to `context` (the user id): a row copied to another user's
    /// session does not open.
    pub(crate) fn seal(&self, plain: &[u8], context: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system's random source works");
        let mut data = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut data,
            )
            .expect("sealing a small buffer does not fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        STANDARD.encode(out)
    }

    pub(crate) fn open(&self, sealed: &str, context: &str) -> Option<Vec<u8>> {
        let raw = STANDARD.decode(sealed).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, data) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = data.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut data)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Secret {
        Secret::new(STANDARD.encode([7u8; 32]))
    }

    #[test]
    fn sealed_tokens_open_only_with_their_key_and_user() {
        let sealer = Sealer::new(&key()).unwrap();
        let sealed = sealer.seal(b"access-and-refresh", "42");
        assert!(!sealed.contains("access"));
        assert_eq!(sealer.open(&sealed, "42").unwrap(), b"access-and-refresh");
        assert_eq!(sealer.open(&sealed, "43"), None);
        let other = Sealer::new(&Secret::new(STANDARD.encode([8u8; 32]))).unwrap();
        assert_eq!(other.open(&sealed, "42"), None);
        // Two seals of one value differ (fresh nonce each time).
        assert_ne!(sealed, sealer.seal(b"access-and-refresh", "42"));
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(Sealer::new(&Secret::new("not base64!")).is_err());
        assert!(Sealer::new(&Secret::new(STANDARD.encode([1u8; 16]))).is_err());
    }

    #[test]
    fn tokens_are_long_random_and_compared_exactly() {
        let a = random_token();
        assert!(a.len() >= 43, "256 bits in base64");
        assert_ne!(a, random_token());
        assert!(same(&a, &a.clone()));
        assert!(!same(&a, &random_token()));
        assert!(!same("abc", "abcd"));
        assert_eq!(digest("x").len(), 64);
    }
}
