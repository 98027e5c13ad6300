//! A tiny generational slab: socket and operation tables indexed by small integers.

use crate::completion::SocketId;

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// Values addressed by `(index, generation)`; a freed index is reused with a new generation.
pub(crate) struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Slab<T> {
    pub(crate) fn new() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    /// Stores `value` and returns its id.
    pub(crate) fn insert(&mut self, value: T) -> SocketId {
        self.len += 1;
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.value = Some(value);
            return SocketId {
                index,
                generation: slot.generation,
            };
        }
        let index = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        self.slots.push(Slot {
            generation: 0,
            value: Some(value),
        });
        SocketId {
            index,
            generation: 0,
        }
    }

    pub(crate) fn get(&self, id: SocketId) -> Option<&T> {
        self.slots
            .get(id.index as usize)
            .filter(|s| s.generation == id.generation)
            .and_then(|s| s.value.as_ref())
    }

    pub(crate) fn get_mut(&mut self, id: SocketId) -> Option<&mut T> {
        self.slots
            .get_mut(id.index as usize)
            .filter(|s| s.generation == id.generation)
            .and_then(|s| s.value.as_mut())
    }

    /// The live id at `index`, if any (used to map epoll tokens and ring user data back).
    pub(crate) fn id_at(&self, index: usize) -> Option<SocketId> {
        let slot = self.slots.get(index)?;
        slot.value.as_ref()?;
        Some(SocketId {
            index: index as u32,
            generation: slot.generation,
        })
    }

    pub(crate) fn remove(&mut self, id: SocketId) -> Option<T> {
        let slot = self
            .slots
            .get_mut(id.index as usize)
            .filter(|s| s.generation == id.generation)?;
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        self.len -= 1;
        Some(value)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Ids of every live value.
    pub(crate) fn ids(&self) -> Vec<SocketId> {
        (0..self.slots.len())
            .filter_map(|i| self.id_at(i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_ids_do_not_alias_reused_slots() {
        let mut slab = Slab::new();
        let a = slab.insert("a");
        assert_eq!(slab.remove(a), Some("a"));
        let b = slab.insert("b");
        assert_eq!(a.index, b.index);
        assert!(slab.get(a).is_none());
        assert_eq!(slab.get(b), Some(&"b"));
        assert_eq!(slab.len(), 1);
        assert_eq!(slab.ids(), vec![b]);
    }
}
