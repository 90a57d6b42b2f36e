//! A Paddle Billing webhook sender for tests: builds subscription events as Paddle writes
//! them, signs them (`Paddle-Signature: ts=…;h1=…`, one `h1` per secret as during a
//! rotation), and delivers them as Paddle does: retried until answered 2xx, possibly twice,
//! possibly out of order (the caller picks the order).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::hmac;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One subscription state, as a `subscription.*` event carries it.
#[derive(Clone, Debug)]
pub struct SubscriptionEvent {
    pub event_id: String,
    pub event_type: String,
    /// Milliseconds since the epoch.
    pub occurred_at: u64,
    pub subscription_id: String,
    pub user_id: u64,
    /// `trialing`, `active`, `past_due`, `paused`, `canceled`.
    pub status: String,
    pub quantity: u32,
    /// End of the current billing period (ms), absent when paused or canceled.
    pub period_end: Option<u64>,
}

impl SubscriptionEvent {
    /// The JSON body Paddle would send.
    pub fn body(&self) -> String {
        let period = match self.period_end {
            Some(end) => format!(
                r#"{{"starts_at":"{}","ends_at":"{}"}}"#,
                rfc3339(self.occurred_at),
                rfc3339(end)
            ),
            None => "null".to_owned(),
        };
        format!(
            r#"{{"event_id":"{id}","event_type":"{kind}","occurred_at":"{at}","notification_id":"ntf_{id}","data":{{"id":"{sub}","status":"{status}","customer_id":"ctm_01test","custom_data":{{"user_id":"{user}"}},"items":[{{"quantity":{quantity},"price":{{"id":"pri_01premium"}}}}],"current_billing_period":{period}}}}}"#,
            id = self.event_id,
            kind = self.event_type,
            at = rfc3339(self.occurred_at),
            sub = self.subscription_id,
            status = self.status,
            user = self.user_id,
            quantity = self.quantity,
        )
    }
}

/// `ms` as Paddle writes instants: `2024-04-12T10:18:47.635000Z`.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1_000;
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}000Z",
        rest / 3_600,
        rest / 60 % 60,
        rest % 60,
        ms % 1_000
    )
}

/// The wall clock in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Delivers signed webhooks to a dashboard.
pub struct PaddleSender {
    pub addr: SocketAddr,
    /// Each delivery carries one `h1` per secret (Paddle during a rotation).
    pub secrets: Vec<String>,
}

impl PaddleSender {
    pub fn new(addr: SocketAddr, secrets: &[&str]) -> Self {
        Self {
            addr,
            secrets: secrets.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// The `Paddle-Signature` header for `body` signed at `ts` (seconds).
    pub fn signature(&self, ts: u64, body: &[u8]) -> String {
        let mut header = format!("ts={ts}");
        for secret in &self.secrets {
            let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
            let mut signed = format!("{ts}:").into_bytes();
            signed.extend_from_slice(body);
            let tag: String = hmac::sign(&key, &signed)
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            header.push_str(&format!(";h1={tag}"));
        }
        header
    }

    /// One delivery signed now; the status and body of the answer.
    pub async fn send(&self, body: &str) -> (u16, String) {
        let signature = self.signature(now_ms() / 1_000, body.as_bytes());
        self.post(Some(&signature), body.as_bytes()).await
    }

    /// Delivers as Paddle does: again (freshly signed) while the answer is not 2xx, at
    /// most `tries` times; the last answer.
    pub async fn deliver(&self, body: &str, tries: u32) -> (u16, String) {
        let mut answer = (0, String::new());
        for attempt in 0..tries {
            answer = self.send(body).await;
            if (200..300).contains(&answer.0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20 << attempt.min(5))).await;
        }
        answer
    }

    /// A raw POST to `/webhooks/paddle` with the given signature header (or none).
    pub async fn post(&self, signature: Option<&str>, body: &[u8]) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let mut head = format!(
            "POST /webhooks/paddle HTTP/1.1\r\nHost: {}\r\nConnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some(signature) = signature {
            head.push_str(&format!("paddle-signature: {signature}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        // A server refusing an oversized body may close before reading it all.
        let _ = stream.write_all(body).await;
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        crate::status_and_body(&String::from_utf8_lossy(&response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_written_as_paddle_writes_them() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(1_700_000_000_635), "2023-11-14T22:13:20.635000Z");
        assert_eq!(rfc3339(1_709_208_000_000), "2024-02-29T12:00:00.000000Z");
    }
}
