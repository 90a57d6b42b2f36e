//! Who leads, as this coordinator knows it: itself while it leads; otherwise the leader that
//! announced itself in the data directory the coordinators share (`leader.json`), or, on a
//! shared store, in the store (`announce_leader`), read by standbys for `/leader` and for
//! the "not leader, try X" answer to nodes.
//!
//! The announcement is only believed while this coordinator cannot open the store (someone
//! holds its lock, so the announced leader or its successor is alive). Once it has opened the
//! store and waits for the lease, it knows of no leader: the announcement may be a dead
//! leader's.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use protonn_storage::LeaderAnnouncement;
use tonic::Status;

use crate::grpc::{LEADER_HINT, STANDBY};

/// Where the leader announces itself, in the coordinators' data directory.
const FILE: &str = "leader.json";

/// A leader as nodes and operators reach it: the same record whether announced in the
/// shared directory's file or in a shared store.
pub(crate) type LeaderInfo = LeaderAnnouncement;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Role {
    /// Waiting for the store's lock: the announced leader holds it.
    Standby,
    /// On a shared store, the lease is held by this leader, as it announced itself there.
    Behind(LeaderInfo),
    /// Holds the store, waits for the lease (or lost it): nobody known leads.
    Taking,
    Leading(u64),
}

/// Shared by the gRPC services and the ops endpoint of one coordinator.
pub(crate) struct LeaderView {
    id: String,
    address: String,
    /// `None` when the coordinators share no directory (a shared store): standbys then know
    /// no leader to name.
    file: Option<PathBuf>,
    role: Mutex<Role>,
}

/// What a coordinator says about leadership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Known {
    Me(LeaderInfo),
    Other(LeaderInfo),
    Nobody,
}

impl LeaderView {
    pub(crate) fn new(id: String, address: String, data_dir: Option<&Path>) -> Self {
        Self {
            id,
            address,
            file: data_dir.map(|dir| dir.join(FILE)),
            role: Mutex::new(Role::Standby),
        }
    }

    fn set(&self, role: Role) {
        *self.role.lock().expect("role poisoned") = role;
    }

    /// This coordinator opened the store: no announcement is believed any more.
    pub(crate) fn taking(&self) {
        self.set(Role::Taking);
    }

    /// On a shared store, who holds the lease, as read from the store (`None`: unknown).
    pub(crate) fn led_by(&self, leader: Option<LeaderInfo>) {
        self.set(leader.map_or(Role::Taking, Role::Behind));
    }

    /// This coordinator leads with `epoch`: it says so, and announces it to the standbys.
    /// An announcement that cannot be written costs only the standbys' hints (logged).
    pub(crate) fn leading(&self, epoch: u64) {
        self.set(Role::Leading(epoch));
        let Some(file) = &self.file else { return };
        let me = self.me(epoch);
        let text = serde_json::to_vec(&me).expect("leader info serialises");
        let temporary = file.with_extension("json.tmp");
        let written =
            std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, file));
        if let Err(err) = written {
            tracing::warn!(error = %err, file = %file.display(), "leader not announced to standbys");
        }
    }

    /// This coordinator stopped leading: it withdraws its announcement (if still its own).
    pub(crate) fn stepped_down(&self) {
        let was = std::mem::replace(&mut *self.role.lock().expect("role poisoned"), Role::Taking);
        if let Role::Leading(epoch) = was
            && let Some(file) = &self.file
            && self.announced().as_ref() == Some(&self.me(epoch))
        {
            let _ = std::fs::remove_file(file);
        }
    }

    pub(crate) fn me(&self, epoch: u64) -> LeaderInfo {
        LeaderInfo {
            id: self.id.clone(),
            address: self.address.clone(),
            epoch,
        }
    }

    fn announced(&self) -> Option<LeaderInfo> {
        let text = std::fs::read(self.file.as_ref()?).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub(crate) fn leads(&self) -> bool {
        matches!(*self.role.lock().expect("role poisoned"), Role::Leading(_))
    }

    pub(crate) fn known(&self) -> Known {
        let role = self.role.lock().expect("role poisoned").clone();
        match role {
            Role::Leading(epoch) => Known::Me(self.me(epoch)),
            Role::Taking => Known::Nobody,
            Role::Behind(leader) if leader.id != self.id || leader.address != self.address => {
                Known::Other(leader)
            }
            Role::Behind(_) => Known::Nobody,
            Role::Standby => match self.announced() {
                Some(leader) if leader.id != self.id || leader.address != self.address => {
                    Known::Other(leader)
                }
                _ => Known::Nobody,
            },
        }
    }

    /// The leader another process should try instead of this one, if known.
    pub(crate) fn hint(&self) -> Option<LeaderInfo> {
        match self.known() {
            Known::Other(leader) => Some(leader),
            Known::Me(_) | Known::Nobody => None,
        }
    }
}

/// A standby's answer to a call only the leader serves: `Unavailable`, naming the leader in
/// the message and, for clients to follow at once, in the [`LEADER_HINT`] metadata.
pub(crate) fn not_leader(view: &LeaderView) -> Status {
    let mut status = match view.hint() {
        Some(leader) => {
            let mut status = Status::unavailable(format!(
                "not leader, try {} at {}",
                leader.id, leader.address
            ));
            if let Ok(value) = leader.address.parse() {
                status.metadata_mut().insert(LEADER_HINT, value);
            }
            status
        }
        None => Status::unavailable("standby coordinator: not leading, and no leader known"),
    };
    status
        .metadata_mut()
        .insert(STANDBY, tonic::metadata::MetadataValue::from_static("1"));
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standby_names_the_announced_leader_until_it_holds_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let leader = LeaderView::new(
            "c-0".into(),
            "http://10.0.0.1:7900".into(),
            Some(dir.path()),
        );
        let standby = LeaderView::new(
            "c-1".into(),
            "http://10.0.0.2:7900".into(),
            Some(dir.path()),
        );
        assert_eq!(standby.known(), Known::Nobody);

        leader.taking();
        leader.leading(3);
        let announced = LeaderInfo {
            id: "c-0".into(),
            address: "http://10.0.0.1:7900".into(),
            epoch: 3,
        };
        assert_eq!(leader.known(), Known::Me(announced.clone()));
        assert!(leader.hint().is_none());
        assert_eq!(standby.known(), Known::Other(announced.clone()));
        assert_eq!(standby.hint(), Some(announced));
        let status = not_leader(&standby);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(
            crate::grpc::leader_hint(&status).as_deref(),
            Some("http://10.0.0.1:7900")
        );

        // Holding the store, the standby trusts no announcement (the old leader may be dead).
        standby.taking();
        assert_eq!(standby.known(), Known::Nobody);
        assert!(crate::grpc::leader_hint(&not_leader(&standby)).is_none());

        // A leader that steps down withdraws its announcement.
        leader.stepped_down();
        assert!(!leader.leads());
        let other = LeaderView::new(
            "c-2".into(),
            "http://10.0.0.3:7900".into(),
            Some(dir.path()),
        );
        assert_eq!(other.known(), Known::Nobody);
    }
}
