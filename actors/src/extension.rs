//! Per-worker typed extensions: resources that belong to one worker thread (the I/O reactor its
//! driver polls, a buffer pool, a per-core cache), stored by the driver factory on the worker
//! thread and reached by the actors running there, without locks or shared atomics.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

thread_local! {
    static EXTENSIONS: RefCell<HashMap<TypeId, Rc<dyn Any>>> = RefCell::new(HashMap::new());
}

/// Stores `value` for the current thread (call it from a driver factory: it runs on the worker
/// thread). Replaces a previous value of the same type.
pub fn set_worker_extension<T: 'static>(value: Rc<T>) {
    EXTENSIONS.with(|e| e.borrow_mut().insert(TypeId::of::<T>(), value));
}

/// The value of type `T` stored for the current thread, if any.
pub fn worker_extension<T: 'static>() -> Option<Rc<T>> {
    EXTENSIONS
        .with(|e| e.borrow().get(&TypeId::of::<T>()).cloned())
        .and_then(|v| v.downcast::<T>().ok())
}

/// Removes the value of type `T` stored for the current thread.
pub fn remove_worker_extension<T: 'static>() -> Option<Rc<T>> {
    EXTENSIONS
        .with(|e| e.borrow_mut().remove(&TypeId::of::<T>()))
        .and_then(|v| v.downcast::<T>().ok())
}
