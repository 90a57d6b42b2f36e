use serde::{Deserialize, Serialize};

/// A shard's gateway session, taken from a drained shard (or a running shard's checkpoint)
/// so that another shard (on this node or another) can RESUME it: no IDENTIFY spent, the
/// missed events replayed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedSession {
    pub shard_id: u32,
    pub session_id: String,
    /// Sequence of the last event the old owner handed to its sink.
    pub sequence: u64,
    /// Where Discord wants the session resumed (READY's `resume_gateway_url`).
    pub resume_url: Option<String>,
}
