//! Per-worker typed extensions: resources that belong to one worker thread (the I/O reactor its
//! driver polls, a buffer pool, a per-core cache), stored by the driver factory on the worker
//! thread and reached by the actors running there, without locks or shared atomics.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::rc::Rc;

// A worker holds a handful of extensions and I/O actors look theirs up on every turn, so a
// linear scan over a short list beats hashing the 128-bit TypeId (SipHash: ~750 instructions
// a lookup, measured with callgrind on the HTTP server).
thread_local! {
    static EXTENSIONS: RefCell<Vec<(TypeId, Rc<dyn Any>)>> = const { RefCell::new(Vec::new()) };
}

/// Stores `value` for the current thread (call it from a driver factory: it runs on the worker
/// thread). Replaces a previous value of the same type.
pub fn set_worker_extension<T: 'static>(value: Rc<T>) {
    let id = TypeId::of::<T>();
    EXTENSIONS.with(|e| {
        let mut e = e.borrow_mut();
        match e.iter_mut().find(|(t, _)| *t == id) {
            Some(slot) => slot.1 = value,
            None => e.push((id, value)),
        }
    });
}

/// The value of type `T` stored for the current thread, if any.
#[inline]
pub fn worker_extension<T: 'static>() -> Option<Rc<T>> {
    let id = TypeId::of::<T>();
    EXTENSIONS
        .with(|e| {
            e.borrow()
                .iter()
                .find(|(t, _)| *t == id)
                .map(|(_, v)| v.clone())
        })
        .and_then(|v| v.downcast::<T>().ok())
}

/// Removes the value of type `T` stored for the current thread.
pub fn remove_worker_extension<T: 'static>() -> Option<Rc<T>> {
    let id = TypeId::of::<T>();
    EXTENSIONS
        .with(|e| {
            let mut e = e.borrow_mut();
            let at = e.iter().position(|(t, _)| *t == id)?;
            Some(e.swap_remove(at).1)
        })
        .and_then(|v| v.downcast::<T>().ok())
}
