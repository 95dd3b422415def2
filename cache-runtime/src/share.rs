//! Handing a failed leader's error to the callers that waited for it.
//!
//! An error can be shared only if it can be copied and sent across tasks: `Clone + Send + Sync
//! + 'static`. The macros pick [`ErrorSharing::by_clone`] for such error types and nothing for
//! others, without the user writing a bound (see [`crate::probes`]).

use std::any::Any;
use std::sync::Arc;

/// A leader's error, type-erased while it travels through a flight.
pub(crate) type SharedError = Arc<dyn Any + Send + Sync>;

/// How to pack an error for waiting callers and unpack a copy of it.
#[derive(Debug)]
pub struct ErrorSharing<E> {
    pack: fn(&E) -> SharedError,
    unpack: fn(&SharedError) -> Option<E>,
}

impl<E> Clone for ErrorSharing<E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for ErrorSharing<E> {}

impl<E: Clone + Send + Sync + 'static> ErrorSharing<E> {
    /// Waiting callers each get a clone of the leader's error.
    pub fn by_clone() -> Self {
        Self {
            pack: |error| Arc::new(error.clone()),
            unpack: |shared| shared.downcast_ref::<E>().cloned(),
        }
    }
}

impl<E> ErrorSharing<E> {
    pub(crate) fn pack(&self, error: &E) -> SharedError {
        (self.pack)(error)
    }

    pub(crate) fn unpack(&self, shared: &SharedError) -> Option<E> {
        (self.unpack)(shared)
    }
}
