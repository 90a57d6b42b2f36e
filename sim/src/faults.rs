//! Faults the simulator commits on purpose: scripted through
//! [`SimHandle::inject`](crate::SimHandle::inject) or `POST
//! /sim/shards/{shard}/faults`, or at random from a seed
//! ([`RandomFaults`]).

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::state::Shared;

/// One misbehaviour of Discord towards a shard's live connection.
///
/// As JSON: `{"kind": "close", "code": 4000}`, `{"kind": "reconnect"}`,
/// `{"kind": "invalid_session", "resumable": true}`, `{"kind": "half_open"}`,
/// `{"kind": "latency", "ms": 250}`, `{"kind": "drop"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Close the websocket with this code. Codes that end a session on
    /// Discord (4004, 4007, 4009, 4010..=4014) drop it; others leave it
    /// resumable.
    Close { code: u16 },
    /// Op 7 RECONNECT; nothing more is written on that connection and the
    /// session stays resumable.
    Reconnect,
    /// Op 9 INVALID_SESSION. `false` drops the session; `true` detaches it
    /// and leaves it resumable.
    InvalidSession { resumable: bool },
    /// The connection goes silent: no dispatch, no heartbeat ACK, no close,
    /// but it stays open. Dispatches stay buffered for a RESUME.
    HalfOpen,
    /// Every frame to this shard is held back this long (0 removes it); it
    /// applies to later connections of the shard too, until changed.
    Latency { ms: u64 },
    /// The TCP connection ends without a websocket close frame; the session
    /// stays resumable.
    Drop,
    /// Op 1 from the server: Discord may ask for a heartbeat at any time
    /// and the client must send one at once.
    RequestHeartbeat,
}

/// Faults at random: a Poisson process of `per_minute` faults across the
/// shards with a live connection, each drawn uniformly from `faults`,
/// deterministic from the simulator's `seed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RandomFaults {
    /// Mean faults per minute (real time); 0 disables them.
    pub per_minute: f64,
    /// What to draw from. The default is every fault a well-behaved client
    /// survives by resuming.
    pub faults: Vec<Fault>,
}

impl Default for RandomFaults {
    fn default() -> Self {
        Self {
            per_minute: 0.0,
            faults: vec![
                Fault::Close { code: 4000 },
                Fault::Reconnect,
                Fault::InvalidSession { resumable: true },
                Fault::HalfOpen,
                Fault::Drop,
                Fault::RequestHeartbeat,
            ],
        }
    }
}

/// Runs the random faults until shutdown.
pub(crate) async fn run_random(shared: Arc<Shared>) {
    let plan = shared.config.random_faults.clone();
    if plan.per_minute <= 0.0 || plan.faults.is_empty() {
        return;
    }
    let mut rng = SmallRng::seed_from_u64(shared.config.seed ^ 0xfa17_fa17);
    let mut shutdown = shared.shutdown_signal();
    let mean_secs = 60.0 / plan.per_minute;
    loop {
        // Exponential gaps: faults arrive independently of each other.
        let gap = -mean_secs * (1.0 - rng.random::<f64>()).ln();
        let gap = Duration::try_from_secs_f64(gap).unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            () = tokio::time::sleep(gap) => {}
            _ = shutdown.changed() => return,
        }
        let live = shared.sessions.live_shards();
        if live.is_empty() {
            continue;
        }
        let shard = live[rng.random_range(0..live.len())];
        let fault = plan.faults[rng.random_range(0..plan.faults.len())].clone();
        tracing::debug!(shard, ?fault, "random fault");
        shared.inject(shard, fault);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_read_and_write_as_tagged_json() {
        let cases = [
            (
                r#"{"kind":"close","code":4000}"#,
                Fault::Close { code: 4000 },
            ),
            (r#"{"kind":"reconnect"}"#, Fault::Reconnect),
            (
                r#"{"kind":"invalid_session","resumable":false}"#,
                Fault::InvalidSession { resumable: false },
            ),
            (r#"{"kind":"half_open"}"#, Fault::HalfOpen),
            (r#"{"kind":"latency","ms":20}"#, Fault::Latency { ms: 20 }),
            (r#"{"kind":"drop"}"#, Fault::Drop),
            (r#"{"kind":"request_heartbeat"}"#, Fault::RequestHeartbeat),
        ];
        for (json, fault) in cases {
            assert_eq!(serde_json::from_str::<Fault>(json).unwrap(), fault);
            assert_eq!(serde_json::to_string(&fault).unwrap(), json);
        }
        assert!(serde_json::from_str::<Fault>(r#"{"kind":"explode"}"#).is_err());
        assert!(serde_json::from_str::<Fault>(r#"{"kind":"close"}"#).is_err());
    }
}
