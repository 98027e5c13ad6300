//! Groups of recipients and routers over them: broadcast, round-robin, key-hash.
//!
//! A `Group` is a plain value (a snapshot of members); a router owns its cursor, so routing is a
//! local decision with no shared counter on the per-request path. Give each I/O worker its own.

use std::hash::{Hash, Hasher};

use crate::addr::Recipient;
use crate::error::SendError;

/// How a router picks members.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Every member gets a copy.
    Broadcast,
    /// Members in turn, skipping full or stopped ones.
    RoundRobin,
    /// The member chosen by a key's hash: the same key always reaches the same member.
    KeyHash,
}

/// A set of recipients of `M`.
pub struct Group<M> {
    members: Vec<Recipient<M>>,
}

impl<M> Clone for Group<M> {
    fn clone(&self) -> Self {
        Group {
            members: self.members.clone(),
        }
    }
}

impl<M> std::fmt::Debug for Group<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("members", &self.members.len())
            .finish()
    }
}

impl<M: Send + 'static> Group<M> {
    /// A group of these members.
    pub fn new(members: Vec<Recipient<M>>) -> Self {
        Group { members }
    }

    /// The members.
    pub fn members(&self) -> &[Recipient<M>] {
        &self.members
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True with no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// A router over this group.
    pub fn router(self, strategy: Strategy) -> Router<M> {
        Router {
            members: self.members,
            strategy,
            next: 0,
        }
    }
}

/// Routes messages to a group's members by a [`Strategy`].
pub struct Router<M> {
    members: Vec<Recipient<M>>,
    strategy: Strategy,
    next: usize,
}

impl<M: Send + 'static> Router<M> {
    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True with no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Round-robin: the next member that accepts the message. `Full` when every live member is
    /// full, `Closed` when none is alive. (For key-hash routing use [`Router::route_key`].)
    pub fn route(&mut self, msg: M) -> Result<(), SendError<M>> {
        let n = self.members.len();
        let mut msg = msg;
        let mut any_full = false;
        for _ in 0..n {
            let i = self.next % n;
            self.next = self.next.wrapping_add(1);
            match self.members[i].try_send(msg) {
                Ok(()) => return Ok(()),
                Err(SendError::Full(m)) => {
                    any_full = true;
                    msg = m;
                }
                Err(SendError::Closed(m)) => msg = m,
            }
        }
        if any_full {
            Err(SendError::Full(msg))
        } else {
            Err(SendError::Closed(msg))
        }
    }

    /// Key-hash: the member owning `key`.
    pub fn route_key<K: Hash + ?Sized>(&mut self, key: &K, msg: M) -> Result<(), SendError<M>> {
        match self.member_for(key) {
            Some(r) => r.try_send(msg),
            None => Err(SendError::Closed(msg)),
        }
    }

    /// The member owning `key` under key-hash routing.
    pub fn member_for<K: Hash + ?Sized>(&self, key: &K) -> Option<&Recipient<M>> {
        if self.members.is_empty() {
            return None;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        Some(&self.members[(h.finish() % self.members.len() as u64) as usize])
    }

    /// Broadcast: a copy to every member; returns how many accepted it.
    pub fn broadcast(&self, msg: M) -> usize
    where
        M: Clone,
    {
        self.members
            .iter()
            .filter(|r| r.try_send(msg.clone()).is_ok())
            .count()
    }
}
