//! Telling a `Result` or an `Option` under another name from a plain value, through the type
//! system, for return types the macros cannot recognise by name (`type DbResult<T> =
//! Result<T, DbError>`, `anyhow::Result<T>`, `io::Result<T>`).
//!
//! # How
//!
//! Autoref specialization (see [`crate::probes`]): the expansion calls a method on
//! `&&&Kind(..)` with three traits in scope, each implemented for one level of reference:
//!
//! | trait | implemented for | when it applies |
//! | --- | --- | --- |
//! | `*AsResult` | `&&Kind<…>` | the type is `Result<T, E>` (and `T` can be cached) |
//! | `*AsOption` | `&Kind<…>` | the type is `Option<T>` (and `T` can be cached) |
//! | `*AsPlain` | `Kind<…>` | anything else that can be cached |
//!
//! The first applicable row wins: an alias of `Result` is a `Result` by then (aliases are
//! resolved before lookup), hence `Ok` is cached and `Err` passes through, exactly as when
//! written `Result`.
//!
//! # Where it falls back
//!
//! Lookup happens where the function is defined, on its concrete types. In a generic function
//! whose return type is a type parameter (`-> T`), nothing is known about `T`, so the plain row
//! applies: the whole value is cached. Written with the name `Result` or `Option`, the return
//! type never comes here (the macros see the name), and then also gets error sharing and
//! background refreshes, which need concrete types of their own.

use std::future::Future;
use std::marker::PhantomData;

use serde::Serialize;

use crate::macro_support::{
    KeyParts, PutOption, PutPlain, PutResult, ValueSite, cached_option, cached_result, cached_value,
};

/// What a function returned, for the lookup above.
#[derive(Debug)]
pub struct Kind<R>(pub R);

/// The future of a function's body, for the lookup above (holds no borrow of it, so the body
/// can be moved into the call the lookup selects).
#[derive(Debug)]
pub struct BodyKind<F>(PhantomData<F>);

impl<F> BodyKind<F> {
    pub fn of(_body: &F) -> Self {
        Self(PhantomData)
    }
}

/// `#[cached]`: a body whose output is a `Result`.
pub trait ReadAsResult<F> {
    fn read_through(
        &self,
        site: &'static ValueSite,
        key: Option<KeyParts>,
        body: F,
    ) -> impl Future<Output = F::Output>
    where
        F: Future;
}

impl<F, T, E> ReadAsResult<F> for &&BodyKind<F>
where
    F: Future<Output = Result<T, E>>,
    T: crate::CacheValue,
{
    fn read_through(
        &self,
        site: &'static ValueSite,
        key: Option<KeyParts>,
        body: F,
    ) -> impl Future<Output = F::Output> {
        cached_result(site, key, None, None, body)
    }
}

/// `#[cached]`: a body whose output is an `Option`.
pub trait ReadAsOption<F> {
    fn read_through(
        &self,
        site: &'static ValueSite,
        key: Option<KeyParts>,
        body: F,
    ) -> impl Future<Output = F::Output>
    where
        F: Future;
}

impl<F, T> ReadAsOption<F> for &BodyKind<F>
where
    F: Future<Output = Option<T>>,
    T: crate::CacheValue,
{
    fn read_through(
        &self,
        site: &'static ValueSite,
        key: Option<KeyParts>,
        body: F,
    ) -> impl Future<Output = F::Output> {
        cached_option(site, key, body)
    }
}

/// `#[cached]`: any other body.
pub trait ReadAsPlain<F> {
    fn read_through(
        &self,
        site: &'static ValueSite,
        key: Option<KeyParts>,
        body: F,
    ) -> impl Future<Output = F::Output>
    where
        F: Future;
}

impl<F, T> ReadAsPlain<F> for BodyKind<F>
where
    F: Future<Output = T>,
    T: crate::CacheValue,
{
    fn read_through(
        &self,
        site: &'static ValueSite,
        key: Option<KeyParts>,
        body: F,
    ) -> impl Future<Output = F::Output> {
        cached_value(site, key, body)
    }
}

/// `#[cache_put]`: a returned `Result` stores its `Ok` value.
pub trait PutAsResult<'a, T, E> {
    fn put_value(&self) -> PutResult<'a, T, E>;
}

impl<'a, T: Serialize, E> PutAsResult<'a, T, E> for &&Kind<&'a Result<T, E>> {
    fn put_value(&self) -> PutResult<'a, T, E> {
        PutResult(self.0)
    }
}

/// `#[cache_put]`: a returned `Option` stores its `Some` value.
pub trait PutAsOption<'a, T> {
    fn put_value(&self) -> PutOption<'a, T>;
}

impl<'a, T: Serialize> PutAsOption<'a, T> for &Kind<&'a Option<T>> {
    fn put_value(&self) -> PutOption<'a, T> {
        PutOption(self.0)
    }
}

/// `#[cache_put]`: any other returned value is stored as it is.
pub trait PutAsPlain<'a, T> {
    fn put_value(&self) -> PutPlain<'a, T>;
}

impl<'a, T: Serialize> PutAsPlain<'a, T> for Kind<&'a T> {
    fn put_value(&self) -> PutPlain<'a, T> {
        PutPlain(self.0)
    }
}

/// `#[invalidates]`: a returned `Result` invalidates only when it is `Ok`.
pub trait SucceededAsResult {
    fn succeeded(&self) -> bool;
}

impl<T, E> SucceededAsResult for &Kind<&Result<T, E>> {
    fn succeeded(&self) -> bool {
        self.0.is_ok()
    }
}

/// `#[invalidates]`: anything else always invalidates.
pub trait SucceededAsAny {
    fn succeeded(&self) -> bool;
}

impl<R> SucceededAsAny for Kind<&R> {
    fn succeeded(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type DbResult<T> = Result<T, String>;

    #[test]
    #[allow(clippy::needless_borrow)] // the borrows are what select the implementation
    fn aliases_are_told_apart_from_plain_values() {
        let failed: DbResult<u32> = Err("down".to_owned());
        let done: std::io::Result<()> = Ok(());
        let plain = 7u32;
        {
            use super::{SucceededAsAny as _, SucceededAsResult as _};
            assert!(!(&&Kind(&failed)).succeeded());
            assert!((&&Kind(&done)).succeeded());
            assert!((&&Kind(&plain)).succeeded());
        }
        use super::{PutAsOption as _, PutAsPlain as _, PutAsResult as _};
        use crate::macro_support::PutValue;
        assert!((&&&Kind(&failed)).put_value().put_value().is_none());
        let some: Option<u8> = Some(1);
        assert_eq!((&&&Kind(&some)).put_value().put_value(), Some(&1));
        assert_eq!((&&&Kind(&plain)).put_value().put_value(), Some(&7));
    }
}
