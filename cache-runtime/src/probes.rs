//! Choices the macros make from the types of an annotated function, without bounds the user
//! would have to write: whether a failed load's error is shared with the callers that waited
//! for it ([`Probe`]), and whether a `Result` or `Option` under another name is cached like
//! one ([`return_kind`]).
//!
//! # The mechanism: autoref specialization
//!
//! The expansion calls a method on a reference to a zero-sized probe, with two or more traits
//! in scope that each define that method, implemented for a different number of references:
//!
//! ```text
//! use __private::{KeepErrors as _, ShareClonedErrors as _};
//! (&Probe::of(&body)).error_sharing()
//! //  ShareClonedErrors for Probe<E>  where E: Clone + Send + Sync + 'static
//! //  KeepErrors        for &Probe<E> (no bounds)
//! ```
//!
//! Method lookup tries the receiver type as written first (`&Probe<E>`: `error_sharing(&self)`
//! of an impl for `Probe<E>`), then with one more reference (`&&Probe<E>`: the impl for
//! `&Probe<E>`), then one dereference at a time; at each step it keeps only the impls whose
//! bounds hold, and the first step with one wins. So the bounded impl is taken when its bounds
//! hold, and the unbounded one otherwise. Nothing is decided at run time.
//!
//! # Where it silently falls back
//!
//! Lookup runs where the function is defined, on the types as known there. In a generic
//! function (`-> Result<T, E>` with `E` a type parameter) the bounds are unknown unless the
//! function states them, so the fallback is taken: errors are not shared (each waiting caller
//! runs its own load), and a `-> R` return is cached whole. Add the bounds (`E: Clone + Send +
//! Sync + 'static`) to the function to get sharing there.
//!
//! # The lifetime gap, and what the macros do about it
//!
//! Selection ignores lifetimes: `E: 'static` "holds" for `&'a str` while choosing, and the
//! borrow checker rejects the choice afterwards, with an error inside the expansion. So the
//! macros probe an error type only when it is written without references or lifetimes
//! (`Result<T, &str>` and `Result<T, ParseError<'a>>` never share their errors). A lifetime
//! that is not written at all (`Result<T, ParseError>` for a `ParseError<'a>`, allowed by
//! the elided-lifetimes rule) is invisible to them: write it (`ParseError<'_>`).
//!
//! Auto traits of async blocks are not known during selection either (`Send` of a body is
//! settled later), so whether refreshes may run in a background task is not probed at all:
//! the macros decide from the signature (owned inputs) and call
//! [`background_refresh`](crate::macro_support::background_refresh), whose ordinary `Send +
//! 'static` bound reports a body that cannot move to a task, naming the value that is not
//! `Send`; `refresh_in_caller` opts out.

use std::future::Future;
use std::marker::PhantomData;

use crate::share::ErrorSharing;

pub mod return_kind;

/// Stands for the error type of a body future.
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
