//! Handing a failed leader's error to the callers that waited for it.
//!
//! An error can be shared only if it can be copied and sent across tasks: `Clone + Send + Sync
//! + 'static`. The macros pick [`ErrorSharing::by_clone`] for such error types and nothing for
//! others (autoref specialization on [`Probe`]), without the user writing a bound.

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
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

/// Stands for the error type of a body future, for the macros' autoref specialization.
#[derive(Debug)]
pub struct Probe<E>(PhantomData<E>);

impl<E> Probe<E> {
    /// The probe for the error type of `body`.
    pub fn of<T, F: Future<Output = Result<T, E>>>(_body: &F) -> Self {
        Self(PhantomData)
    }
}

/// Chosen when the error type can be shared.
pub trait ShareClonedErrors<E> {
    fn error_sharing(&self) -> Option<ErrorSharing<E>>;
}

impl<E: Clone + Send + Sync + 'static> ShareClonedErrors<E> for Probe<E> {
    fn error_sharing(&self) -> Option<ErrorSharing<E>> {
        Some(ErrorSharing::by_clone())
    }
}

/// Chosen otherwise: each waiting caller runs its own loader after a failure.
pub trait KeepErrors<E> {
    fn error_sharing(&self) -> Option<ErrorSharing<E>>;
}

impl<E> KeepErrors<E> for &Probe<E> {
    fn error_sharing(&self) -> Option<ErrorSharing<E>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct NotClone;

    #[test]
    #[allow(clippy::needless_borrow)] // the borrow is what selects the implementation
    fn cloneable_errors_are_shared_and_others_are_not() {
        let shared_body = async { Err::<(), String>("boom".to_owned()) };
        let kept_body = async { Err::<(), NotClone>(NotClone) };
        let sharing = (&Probe::of(&shared_body)).error_sharing();
        let keeping = (&Probe::of(&kept_body)).error_sharing();
        let sharing = sharing.expect("String errors are shared");
        assert!(keeping.is_none());
        let packed = sharing.pack(&"boom".to_owned());
        assert_eq!(sharing.unpack(&packed).as_deref(), Some("boom"));
    }
}
