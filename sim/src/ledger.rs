//! The ledger: every dispatch written to a websocket, every gateway lifecycle
//! event and every REST request, in order, so end-to-end tests can prove that
//! nothing was lost or duplicated.
//!
//! Lists stop growing at `ledger_capacity` (and `truncated` is set) so a long
//! load run cannot exhaust memory; the counters in [`SimStats`] stay exact.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::faults::Fault;
use crate::interactions::InteractionRecord;
use crate::ratelimit::RateLimitScope;

/// A dispatch as it was written to a client.
#[derive(Clone, Debug, Serialize)]
pub struct DispatchRecord {
    pub shard: u32,
    /// The `num_shards` the session identified with: during a resharding
    /// sessions of two counts deliver at once, and this tells them apart.
    pub shards: u32,
    /// Session id the dispatch belongs to.
    pub session: String,
    pub seq: u64,
    /// Event name: `READY`, `GUILD_CREATE`, `MESSAGE_CREATE`,
    /// `INTERACTION_CREATE`, `RESUMED`.
    pub event: String,
    pub guild_id: Option<u64>,
    /// Message id, interaction id, or guild id for `GUILD_CREATE`.
    pub entity_id: Option<u64>,
    /// Written again as part of a RESUME replay.
    pub replayed: bool,
}

/// A gateway connection lifecycle event.
#[derive(Clone, Debug, Serialize)]
pub struct GatewayRecord {
    /// Known once the connection identified or resumed.
    pub shard: Option<u32>,
    /// The session's `num_shards`, known with `shard`.
    pub shards: Option<u32>,
    pub session: Option<String>,
    /// The connection's transport compression (`zlib-stream`, `zstd-stream`);
    /// `None` for plain text frames.
    pub compress: Option<&'static str>,
    pub kind: GatewayEventKind,
    /// Milliseconds since the simulator started (unscaled).
    pub at_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GatewayEventKind {
    /// A websocket was accepted (HELLO sent).
    Connected,
    /// IDENTIFY accepted; a new session started.
    Identified,
    /// RESUME accepted after replaying `replayed` dispatches.
    Resumed { replayed: u64 },
    /// Op 9 sent.
    InvalidSession { resumable: bool },
    /// The simulator closed the websocket with `code`.
    ClosedByServer { code: u16 },
    /// The client closed the websocket with `code` (`None`: a close frame
    /// without one).
    ClosedByClient { code: Option<u16> },
    /// The websocket is gone, whoever closed it.
    Disconnected,
    /// Op 1 sent: the simulator asked the client for a heartbeat.
    HeartbeatRequested,
    /// The client's first heartbeat after [`HeartbeatRequested`](Self::HeartbeatRequested).
    HeartbeatAnswered,
    /// A fault was committed on purpose (scripted or random).
    FaultInjected { fault: Fault },
}

/// An IDENTIFY as the identify rules judged it.
#[derive(Clone, Debug, Serialize)]
pub struct IdentifyRecord {
    pub shard: u32,
    /// The `num_shards` it asked for.
    pub shards: u32,
    /// `shard % max_concurrency`.
    pub bucket: u32,
    /// Milliseconds since the simulator started (unscaled), when the
    /// IDENTIFY was received.
    pub at_ms: u64,
    pub outcome: IdentifyOutcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifyOutcome {
    /// A session started.
    Accepted,
    /// The bucket already identified within the window: op 9 `false`.
    RateLimited,
    /// The session start budget was spent (op 9 `false`, or the token reset
    /// per [`SessionLimitAction`](crate::SessionLimitAction)).
    SessionLimit,
}

/// A REST request and the status it got.
#[derive(Clone, Debug, Serialize)]
pub struct RestRecord {
    pub method: String,
    /// Path below `/api/v10`, without the query.
    pub path: String,
    /// Route template, e.g. `POST /channels/{channel_id}/messages`;
    /// `unknown` for unmatched paths.
    pub route: String,
    pub status: u16,
    /// The request's JSON body, if it had one.
    pub body: Option<serde_json::Value>,
    /// Milliseconds since the simulator started (unscaled), on arrival.
    pub at_ms: u64,
    /// `x-ratelimit-bucket` of the response, for routes with a bucket.
    pub bucket: Option<String>,
    /// `x-ratelimit-scope` of a 429; `None` on every other status.
    pub rate_limit_scope: Option<RateLimitScope>,
    /// The response was a [`RestFault`](crate::RestFault), scripted or
    /// drawn at random ([`RandomRestFaults`](crate::RandomRestFaults)).
    pub injected: bool,
    /// Counted towards the invalid-request limit: a 401, a 403, or a 429
    /// not of scope `shared`.
    pub invalid: bool,
    /// Refused by the invalid-request ban (a 429 without rate limit
    /// headers); not counted as invalid itself.
    pub banned: bool,
}

/// Everything recorded, or a page of it (`GET /sim/ledger?after_dispatch=N&after_gateway=M&after_rest=K&after_identify=L`
/// returns the lists from those indices on).
#[derive(Clone, Debug, Default, Serialize)]
pub struct LedgerSnapshot {
    pub dispatches: Vec<DispatchRecord>,
    pub gateway: Vec<GatewayRecord>,
    pub rest: Vec<RestRecord>,
    /// Every IDENTIFY that passed validation, accepted or not.
    pub identifies: Vec<IdentifyRecord>,
    /// Every interaction issued, with whether it was answered in time
    /// (page with `after_interaction`).
    pub interactions: Vec<InteractionRecord>,
    /// Some list reached `ledger_capacity` and dropped later records.
    pub truncated: bool,
}

/// Exact counters. Dispatch counters count writes, like the ledger: a
/// dispatch replayed on resume counts again.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct SimStats {
    /// Websockets accepted.
    pub connections: u64,
    /// IDENTIFYs accepted.
    pub identifies: u64,
    /// RESUMEs accepted.
    pub resumes: u64,
    /// Shards whose session has a live connection.
    pub ready_shards: u32,
    /// Dispatches written, replays included.
    pub dispatches: u64,
    /// Bytes of gateway frames written, as they went on the wire (after any
    /// compression; websocket framing and close frames not counted).
    pub gateway_bytes: u64,
    /// Bytes of the same frames as JSON text, before any compression: against
    /// `gateway_bytes`, what transport compression saved.
    pub gateway_text_bytes: u64,
    /// MESSAGE_CREATE dispatches written, replays included.
    pub messages: u64,
    /// REST requests received, failures included.
    pub rest_requests: u64,
    /// Successful `POST /channels/{id}/messages` and interaction callbacks.
    pub replies: u64,
    /// IDENTIFYs refused by the identify rules (rate or budget).
    pub identifies_rejected: u64,
    /// Op 9 frames sent, for any reason.
    pub invalid_sessions: u64,
    /// Faults committed on purpose.
    pub faults: u64,
    /// 429s for the global limit (scripted ones included).
    pub rate_limited_global: u64,
    /// 429s for a route bucket, scope `user` (scripted ones included).
    pub rate_limited_route: u64,
    /// 429s with scope `shared` (only scripted).
    pub rate_limited_shared: u64,
    /// REST responses that were injected faults, scripted or random (429
    /// or 5xx).
    pub rest_faults: u64,
    /// Responses counted towards the invalid-request limit (401, 403, 429
    /// not of scope `shared`); the ban's own 429s are not.
    pub invalid_requests: u64,
    /// Requests refused by the invalid-request ban.
    pub banned_requests: u64,
    /// The invalid-request ban is on now.
    pub rest_banned: bool,
    /// Interactions issued.
    pub interactions: u64,
    /// Interactions whose callback came within the deadline.
    pub interactions_in_time: u64,
    /// Interactions whose first callback came after the deadline (10062).
    pub interactions_late: u64,
    /// Interactions past the deadline without any callback.
    pub interactions_unanswered: u64,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    identifies: AtomicU64,
    resumes: AtomicU64,
    dispatches: AtomicU64,
    gateway_bytes: AtomicU64,
    gateway_text_bytes: AtomicU64,
    messages: AtomicU64,
    rest_requests: AtomicU64,
    replies: AtomicU64,
    identifies_rejected: AtomicU64,
    invalid_sessions: AtomicU64,
    faults: AtomicU64,
    rate_limited_global: AtomicU64,
    rate_limited_route: AtomicU64,
    rate_limited_shared: AtomicU64,
    rest_faults: AtomicU64,
    invalid_requests: AtomicU64,
    banned_requests: AtomicU64,
}

/// Where a page of the ledger starts, per list.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LedgerPage {
    pub(crate) dispatch: usize,
    pub(crate) gateway: usize,
    pub(crate) rest: usize,
    pub(crate) identify: usize,
    pub(crate) interaction: usize,
}

#[derive(Debug)]
pub(crate) struct Ledger {
    capacity: usize,
    lists: Mutex<LedgerSnapshot>,
    counters: Counters,
}

fn push_bounded<T>(list: &mut Vec<T>, item: T, capacity: usize, truncated: &mut bool) {
    if list.len() < capacity {
        list.push(item);
    } else {
        *truncated = true;
    }
}

impl Ledger {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            lists: Mutex::new(LedgerSnapshot::default()),
            counters: Counters::default(),
        }
    }

    fn lists(&self) -> std::sync::MutexGuard<'_, LedgerSnapshot> {
        // A panic elsewhere must not take the ledger down with it.
        self.lists.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn record_dispatch(&self, record: DispatchRecord) {
        self.counters.dispatches.fetch_add(1, Ordering::Relaxed);
        if record.event == "MESSAGE_CREATE" {
            self.counters.messages.fetch_add(1, Ordering::Relaxed);
        }
        let mut lists = self.lists();
        let lists = &mut *lists;
        push_bounded(
            &mut lists.dispatches,
            record,
            self.capacity,
            &mut lists.truncated,
        );
    }

    /// A gateway frame written: `text` bytes of JSON, `wire` bytes once compressed.
    pub(crate) fn record_written(&self, text: usize, wire: usize) {
        self.counters
            .gateway_text_bytes
            .fetch_add(text as u64, Ordering::Relaxed);
        self.counters
            .gateway_bytes
            .fetch_add(wire as u64, Ordering::Relaxed);
    }

    pub(crate) fn record_gateway(&self, record: GatewayRecord) {
        let counter = match record.kind {
            GatewayEventKind::Connected => Some(&self.counters.connections),
            GatewayEventKind::Identified => Some(&self.counters.identifies),
            GatewayEventKind::Resumed { .. } => Some(&self.counters.resumes),
            GatewayEventKind::InvalidSession { .. } => Some(&self.counters.invalid_sessions),
            GatewayEventKind::FaultInjected { .. } => Some(&self.counters.faults),
            _ => None,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let mut lists = self.lists();
        let lists = &mut *lists;
        push_bounded(
            &mut lists.gateway,
            record,
            self.capacity,
            &mut lists.truncated,
        );
    }

    /// `reply` marks a successful bot reply (counted in `replies`).
    pub(crate) fn record_rest(&self, record: RestRecord, reply: bool) {
        self.counters.rest_requests.fetch_add(1, Ordering::Relaxed);
        if reply {
            self.counters.replies.fetch_add(1, Ordering::Relaxed);
        }
        for (set, counter) in [
            (record.injected, &self.counters.rest_faults),
            (record.invalid, &self.counters.invalid_requests),
            (record.banned, &self.counters.banned_requests),
        ] {
            if set {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
        let limited = match record.rate_limit_scope {
            Some(RateLimitScope::Global) => Some(&self.counters.rate_limited_global),
            Some(RateLimitScope::User) => Some(&self.counters.rate_limited_route),
            Some(RateLimitScope::Shared) => Some(&self.counters.rate_limited_shared),
            None => None,
        };
        if let Some(counter) = limited {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let mut lists = self.lists();
        let lists = &mut *lists;
        push_bounded(&mut lists.rest, record, self.capacity, &mut lists.truncated);
    }

    pub(crate) fn record_identify(&self, record: IdentifyRecord) {
        if record.outcome != IdentifyOutcome::Accepted {
            self.counters
                .identifies_rejected
                .fetch_add(1, Ordering::Relaxed);
        }
        let mut lists = self.lists();
        let lists = &mut *lists;
        push_bounded(
            &mut lists.identifies,
            record,
            self.capacity,
            &mut lists.truncated,
        );
    }

    /// Records from the given indices on, so a client can page through.
    pub(crate) fn snapshot(&self, after: &LedgerPage) -> LedgerSnapshot {
        let lists = self.lists();
        fn tail<T: Clone>(list: &[T], from: usize) -> Vec<T> {
            list[from.min(list.len())..].to_vec()
        }
        LedgerSnapshot {
            dispatches: tail(&lists.dispatches, after.dispatch),
            gateway: tail(&lists.gateway, after.gateway),
            rest: tail(&lists.rest, after.rest),
            identifies: tail(&lists.identifies, after.identify),
            interactions: Vec::new(),
            truncated: lists.truncated,
        }
    }

    /// Counters; `ready_shards`, `rest_banned` and the interaction counts
    /// are filled in by the caller, who knows the sessions, the ban and the
    /// interactions.
    pub(crate) fn stats(&self) -> SimStats {
        let c = &self.counters;
        SimStats {
            connections: c.connections.load(Ordering::Relaxed),
            identifies: c.identifies.load(Ordering::Relaxed),
            resumes: c.resumes.load(Ordering::Relaxed),
            ready_shards: 0,
            dispatches: c.dispatches.load(Ordering::Relaxed),
            gateway_bytes: c.gateway_bytes.load(Ordering::Relaxed),
            gateway_text_bytes: c.gateway_text_bytes.load(Ordering::Relaxed),
            messages: c.messages.load(Ordering::Relaxed),
            rest_requests: c.rest_requests.load(Ordering::Relaxed),
            replies: c.replies.load(Ordering::Relaxed),
            identifies_rejected: c.identifies_rejected.load(Ordering::Relaxed),
            invalid_sessions: c.invalid_sessions.load(Ordering::Relaxed),
            faults: c.faults.load(Ordering::Relaxed),
            rate_limited_global: c.rate_limited_global.load(Ordering::Relaxed),
            rate_limited_route: c.rate_limited_route.load(Ordering::Relaxed),
            rate_limited_shared: c.rate_limited_shared.load(Ordering::Relaxed),
            rest_faults: c.rest_faults.load(Ordering::Relaxed),
            invalid_requests: c.invalid_requests.load(Ordering::Relaxed),
            banned_requests: c.banned_requests.load(Ordering::Relaxed),
            rest_banned: false,
            interactions: 0,
            interactions_in_time: 0,
            interactions_late: 0,
            interactions_unanswered: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64) -> DispatchRecord {
        DispatchRecord {
            shard: 0,
            shards: 1,
            session: "s".into(),
            seq,
            event: "MESSAGE_CREATE".into(),
            guild_id: Some(1),
            entity_id: Some(seq),
            replayed: false,
        }
    }

    #[test]
    fn capacity_truncates_lists_but_counters_stay_exact() {
        let ledger = Ledger::new(3);
        for seq in 1..=5 {
            ledger.record_dispatch(message(seq));
        }
        let snapshot = ledger.snapshot(&LedgerPage::default());
        assert_eq!(snapshot.dispatches.len(), 3);
        assert!(snapshot.truncated);
        let stats = ledger.stats();
        assert_eq!(stats.dispatches, 5);
        assert_eq!(stats.messages, 5);
    }

    #[test]
    fn snapshot_pages_from_indices() {
        let ledger = Ledger::new(100);
        for seq in 1..=5 {
            ledger.record_dispatch(message(seq));
        }
        let page = ledger.snapshot(&LedgerPage {
            dispatch: 3,
            ..LedgerPage::default()
        });
        let seqs: Vec<u64> = page.dispatches.iter().map(|d| d.seq).collect();
        assert_eq!(seqs, [4, 5]);
        assert!(!page.truncated);
        assert!(
            ledger
                .snapshot(&LedgerPage {
                    dispatch: 99,
                    gateway: 99,
                    rest: 99,
                    identify: 99,
                    interaction: 99,
                })
                .dispatches
                .is_empty()
        );
    }

    #[test]
    fn gateway_kinds_serialize_tagged() {
        let record = GatewayRecord {
            shard: Some(1),
            shards: Some(2),
            session: None,
            compress: Some("zstd-stream"),
            kind: GatewayEventKind::Resumed { replayed: 4 },
            at_ms: 3,
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["compress"], "zstd-stream");
        assert_eq!(
            json["kind"],
            serde_json::json!({"kind": "resumed", "replayed": 4})
        );
        let ledger = Ledger::new(10);
        ledger.record_gateway(record);
        ledger.record_gateway(GatewayRecord {
            shard: None,
            shards: None,
            session: None,
            compress: None,
            kind: GatewayEventKind::Connected,
            at_ms: 4,
        });
        let stats = ledger.stats();
        assert_eq!((stats.connections, stats.resumes), (1, 1));
    }
}
