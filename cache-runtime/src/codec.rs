//! Serialization of cached values: the [`Codec`] trait, its implementations and [`CodecKind`].

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("{codec} codec: {message}")]
pub struct CodecError {
    codec: &'static str,
    message: String,
}

impl CodecError {
    fn new(codec: &'static str, error: impl std::fmt::Display) -> Self {
        Self {
            codec,
            message: error.to_string(),
        }
    }
}

/// Turns serde values into bytes and back.
pub trait Codec {
    /// The byte that marks this codec in the value envelope; unique per codec.
    const ID: u8;
    /// A short name for errors and logs.
    const NAME: &'static str;

    /// Encodes `value`.
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError>;

    /// Decodes a `T` from `bytes`.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError>;
}

/// [postcard](https://docs.rs/postcard): compact and fast; the default (see BENCHMARKS.md).
#[derive(Debug, Clone, Copy, Default)]
pub struct Postcard;

impl Codec for Postcard {
    const ID: u8 = 1;
    const NAME: &'static str = "postcard";

    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
        postcard::to_stdvec(value).map_err(|e| CodecError::new(Self::NAME, e))
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        postcard::from_bytes(bytes).map_err(|e| CodecError::new(Self::NAME, e))
    }
}

/// JSON: larger and slower, but readable with `redis-cli GET` (feature `json`).
#[cfg(feature = "json")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

/// The envelope byte of JSON payloads, known to inspection without the `json` feature.
pub(crate) const JSON_ID: u8 = 2;

#[cfg(feature = "json")]
impl Codec for Json {
    const ID: u8 = JSON_ID;
    const NAME: &'static str = "json";

    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
        serde_json::to_vec(value).map_err(|e| CodecError::new(Self::NAME, e))
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(|e| CodecError::new(Self::NAME, e))
    }
}

/// Which codec a cache writes with. Reads follow the codec recorded in each value, so a cache
/// can switch codecs without a version bump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CodecKind {
    /// [`Postcard`].
    #[default]
    Postcard,
    /// [`Json`].
    #[cfg(feature = "json")]
    Json,
}

impl CodecKind {
    /// Parses a codec name as used in `CACHE_CODEC`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "postcard" => Some(Self::Postcard),
            #[cfg(feature = "json")]
            "json" => Some(Self::Json),
            _ => None,
        }
    }

    /// The codec's envelope byte.
    pub fn id(self) -> u8 {
        match self {
            Self::Postcard => Postcard::ID,
            #[cfg(feature = "json")]
            Self::Json => Json::ID,
        }
    }

    /// Encodes `value` at the end of `out` (a buffer kept from call to call: no growth from
    /// empty at every write).
    pub(crate) fn encode_into<T: Serialize + ?Sized>(
        self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        match self {
            Self::Postcard => {
                *out = postcard::to_extend(value, std::mem::take(out))
                    .map_err(|e| CodecError::new(Postcard::NAME, e))?;
            }
            #[cfg(feature = "json")]
            Self::Json => {
                serde_json::to_writer(&mut *out, value)
                    .map_err(|e| CodecError::new(Json::NAME, e))?;
            }
        }
        Ok(())
    }

    pub(crate) fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, CodecError> {
        match self {
            Self::Postcard => Postcard::encode(value),
            #[cfg(feature = "json")]
            Self::Json => Json::encode(value),
        }
    }

    /// Decodes with the codec whose envelope byte is `id`.
    pub(crate) fn decode_with_id<T: DeserializeOwned>(
        id: u8,
        bytes: &[u8],
    ) -> Result<T, CodecError> {
        match id {
            Postcard::ID => Postcard::decode(bytes),
            #[cfg(feature = "json")]
            Json::ID => Json::decode(bytes),
            other => Err(CodecError::new(
                "envelope",
                format!("unknown codec id {other} (is the `json` feature off?)"),
            )),
        }
    }
}

/// What a cached function returns (inside its `Result` or `Option`): a type the codecs can
/// store and read back, `serde::Serialize` and `serde::Deserialize` without borrowing. Every
/// such type is one; the trait exists to say so when a type is not.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached: it is not `Serialize` + `Deserialize` (owned)",
    label = "`{Self}` is the type this function caches",
    note = "derive both on `{Self}`: `#[derive(serde::Serialize, serde::Deserialize)]`, or cache a type that has them"
)]
pub trait CacheValue: serde::Serialize + serde::de::DeserializeOwned {}

impl<T: serde::Serialize + serde::de::DeserializeOwned> CacheValue for T {}
