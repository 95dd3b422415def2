//! The shapes a loader's result takes, as far as caching is concerned: always a value
//! (`Result<T, E>`, plain `T`) or possibly absent (`Option<T>`).

use serde::Serialize;
use serde::de::DeserializeOwned;

/// What a loader produced, as far as caching is concerned.
pub(crate) trait Loaded: Sized {
    type Value: Serialize + DeserializeOwned;

    /// The value to store, or `None` for an absence.
    fn value(&self) -> Option<&Self::Value>;
    fn from_value(value: Self::Value) -> Self;
    /// The result for a cached absence, if this shape can express one.
    fn absent() -> Option<Self>;
}

/// A loader result that is always a value.
#[derive(Debug)]
pub(crate) struct Plain<T>(pub(crate) T);

/// A loader result that may be absent.
#[derive(Debug)]
pub(crate) struct Optional<T>(pub(crate) Option<T>);

impl<T: Serialize + DeserializeOwned> Loaded for Plain<T> {
    type Value = T;
    fn value(&self) -> Option<&T> {
        Some(&self.0)
    }
    fn from_value(value: T) -> Self {
        Self(value)
    }
    fn absent() -> Option<Self> {
        None
    }
}

impl<T: Serialize + DeserializeOwned> Loaded for Optional<T> {
    type Value = T;
    fn value(&self) -> Option<&T> {
        self.0.as_ref()
    }
    fn from_value(value: T) -> Self {
        Self(Some(value))
    }
    fn absent() -> Option<Self> {
        Some(Self(None))
    }
}
