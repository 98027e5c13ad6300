//! Named actors and named groups. Entries leave when their actor stops.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Mutex;

use crate::actor::{Actor, ActorId};
use crate::addr::{ActorRef, Addr, Recipient};
use crate::error::RegistryError;
use crate::group::Group;

struct Named {
    aref: ActorRef,
    addr: Box<dyn Any + Send + Sync>,
}

struct Member {
    aref: ActorRef,
    recipient: Box<dyn Any + Send + Sync>,
}

#[derive(Default)]
pub(crate) struct Registry {
    names: Mutex<HashMap<String, Named>>,
    groups: Mutex<HashMap<String, Vec<Member>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    pub(crate) fn register<A: Actor>(
        &self,
        name: &str,
        addr: &Addr<A>,
    ) -> Result<(), RegistryError> {
        let mut names = lock(&self.names);
        if let Some(e) = names.get(name) {
            if e.aref.is_alive() {
                return Err(RegistryError::Taken(name.to_string()));
            }
        }
        addr.actor_ref().0.mark_named();
        names.insert(
            name.to_string(),
            Named {
                aref: addr.actor_ref(),
                addr: Box::new(addr.clone()),
            },
        );
        Ok(())
    }

    pub(crate) fn unregister(&self, name: &str) {
        lock(&self.names).remove(name);
    }

    pub(crate) fn lookup<A: Actor>(&self, name: &str) -> Option<Addr<A>> {
        let names = lock(&self.names);
        let e = names.get(name)?;
        if !e.aref.is_alive() {
            return None;
        }
        e.addr.downcast_ref::<Addr<A>>().cloned()
    }

    pub(crate) fn lookup_ref(&self, name: &str) -> Option<ActorRef> {
        let names = lock(&self.names);
        names
            .get(name)
            .filter(|e| e.aref.is_alive())
            .map(|e| e.aref.clone())
    }

    pub(crate) fn join_group<M: Send + 'static>(&self, group: &str, member: Recipient<M>) {
        let aref = member.actor_ref();
        // The "named" flag tells the stop path to clean the registry.
        aref.0.mark_named();
        let mut groups = lock(&self.groups);
        let members = groups.entry(group.to_string()).or_default();
        if !members.iter().any(|m| m.aref == aref) {
            members.push(Member {
                aref,
                recipient: Box::new(member),
            });
        }
    }

    pub(crate) fn leave_group(&self, group: &str, id: ActorId) {
        if let Some(ms) = lock(&self.groups).get_mut(group) {
            ms.retain(|m| m.aref.id() != id);
        }
    }

    pub(crate) fn group<M: Send + 'static>(&self, group: &str) -> Group<M> {
        let groups = lock(&self.groups);
        let members = groups
            .get(group)
            .map(|ms| {
                ms.iter()
                    .filter(|m| m.aref.is_alive())
                    .filter_map(|m| m.recipient.downcast_ref::<Recipient<M>>().cloned())
                    .collect()
            })
            .unwrap_or_default();
        Group::new(members)
    }

    /// Removes every entry of a stopped actor.
    pub(crate) fn remove_actor(&self, id: ActorId) {
        lock(&self.names).retain(|_, e| e.aref.id() != id);
        let mut groups = lock(&self.groups);
        for ms in groups.values_mut() {
            ms.retain(|m| m.aref.id() != id);
        }
        groups.retain(|_, ms| !ms.is_empty());
    }
}
