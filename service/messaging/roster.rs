//! Channel membership in memory, as both stores keep it: each channel's members,
//! kept ready for fan-out as one shared sorted list (rebuilt only when the channel's
//! membership changes, not per message), and each user's channels for the per-user
//! limit. Guarded by a std mutex: every critical section is a few map operations and
//! never crosses an `.await`.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
};

/// The roster. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Roster {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Each channel's members.
    channels: HashMap<String, Channel>,
    /// Each user's channels.
    joined: HashMap<String, BTreeSet<String>>,
}

/// One channel's members.
#[derive(Debug, Default)]
struct Channel {
    /// Who they are.
    members: BTreeSet<String>,
    /// The same, sorted, as sends share it; `None` after a change until asked for.
    ready: Option<Arc<[String]>>,
}

impl Roster {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `user` as a member of `channel` (or not).
    pub fn apply(&self, channel: &str, user: &str, member: bool) {
        let mut inner = self.lock();
        if member {
            inner
                .joined
                .entry(user.to_owned())
                .or_default()
                .insert(channel.to_owned());
            let entry = inner.channels.entry(channel.to_owned()).or_default();
            if entry.members.insert(user.to_owned()) {
                entry.ready = None;
            }
            return;
        }
        if let Some(joined) = inner.joined.get_mut(user) {
            joined.remove(channel);
            if joined.is_empty() {
                inner.joined.remove(user);
            }
        }
        if let Some(entry) = inner.channels.get_mut(channel) {
            if entry.members.remove(user) {
                entry.ready = None;
            }
            if entry.members.is_empty() {
                inner.channels.remove(channel);
            }
        }
    }

    /// Whether `user` is a member of `channel`.
    pub fn is_member(&self, channel: &str, user: &str) -> bool {
        self.lock()
            .channels
            .get(channel)
            .is_some_and(|c| c.members.contains(user))
    }

    /// How many channels `user` is a member of.
    pub fn joined(&self, user: &str) -> usize {
        self.lock().joined.get(user).map_or(0, BTreeSet::len)
    }

    /// The channels `user` is a member of.
    pub fn channels_of(&self, user: &str) -> Vec<String> {
        self.lock()
            .joined
            .get(user)
            .map(|c| c.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The members of `channel`, sorted, shared.
    pub fn members(&self, channel: &str) -> Arc<[String]> {
        let mut inner = self.lock();
        let Some(entry) = inner.channels.get_mut(channel) else {
            return Arc::from(Vec::new());
        };
        entry
            .ready
            .get_or_insert_with(|| entry.members.iter().cloned().collect())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channels_list_is_shared_until_its_membership_changes() {
        let roster = Roster::default();
        roster.apply("c", "bob", true);
        roster.apply("c", "alice", true);
        let first = roster.members("c");
        assert_eq!(&first[..], ["alice", "bob"]);
        assert!(Arc::ptr_eq(&first, &roster.members("c")));
        roster.apply("c", "carol", true);
        assert_eq!(&roster.members("c")[..], ["alice", "bob", "carol"]);
        roster.apply("c", "alice", false);
        assert_eq!(roster.joined("alice"), 0);
        assert!(!roster.is_member("c", "alice"));
        assert_eq!(roster.joined("bob"), 1);
    }
}
