//! Errors of the explicit cache API.

use std::time::Duration;

use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::codec::CodecError;

/// Why an explicit cache operation failed. `get_or_set` and the macros never surface these:
/// they fall back to the source instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The circuit breaker is open, so Redis was not called.
    #[error("Redis is unavailable: the circuit breaker is open after repeated failures")]
    BreakerOpen,
    /// Redis did not answer within the operation timeout.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis rejected the credentials of the configured URL.
    #[error("Redis rejected the credentials in the configured URL: {0}")]
    Authentication(#[source] RedisError),
    /// Any other error from Redis or the connection to it.
    #[error("Redis error: {0}")]
    Redis(#[source] RedisError),
    /// The value could not be encoded.
    #[error("could not encode the value: {0}")]
    Encode(#[from] CodecError),
    /// The encoded value is larger than the configured maximum.
    #[error("the encoded value is {size} bytes, above the {limit}-byte limit")]
    TooLarge {
        /// Encoded size in bytes.
        size: usize,
        /// The configured `max_value_bytes`.
        limit: usize,
    },
    /// The value's tags cannot be stored (too many, or one too long).
    #[error("invalid tags: {0}")]
    InvalidTags(String),
    /// A replica did not confirm an invalidation in time (`WAIT`): the master has it, a
    /// failover could lose it, so it is kept and sent again until confirmed.
    #[error("{acked} of {replicas} replicas confirmed the invalidation in time")]
    Unconfirmed {
        /// Replicas that confirmed.
        acked: usize,
        /// Replicas the shard has.
        replicas: usize,
    },
    /// The configuration does not match the server (a cluster node in `node` mode, or a plain
    /// Redis in `cluster` mode): the message names the setting.
    #[error("{0}")]
    Topology(String),
    /// Caching is off (`CACHE_DISABLED`, `CacheConfigBuilder::disabled`): Redis is not called.
    #[error("caching is disabled (CACHE_DISABLED): Redis is not called")]
    Disabled,
    /// The cache was created outside a Tokio runtime.
    #[error("cache-runtime needs a Tokio runtime: create the Cache inside one")]
    NoRuntime,
}

impl CacheError {
    pub(crate) fn from_redis(error: RedisError) -> Self {
        if is_authentication(&error) {
            Self::Authentication(error)
        } else {
            Self::Redis(error)
        }
    }

    /// Whether sending the same command later may succeed: a connection-class failure, or a
    /// refusal that lasts only while the server is in a state (`OOM` under `noeviction` until
    /// memory frees, `BUSY` while a script runs, `READONLY` on a replica until a failover's
    /// clients reconnect to the new primary, a cluster's redirection or passing state).
    /// Invalidations that fail so are kept for replay.
    pub(crate) fn is_worth_retrying(&self) -> bool {
        self.is_connection_class()
            || matches!(self, Self::Unconfirmed { .. })
            || matches!(self, Self::Redis(e) if matches!(e.code(), Some("OOM" | "BUSY" | "READONLY" | "NOREPLICAS" | "MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN")))
    }

    /// A cluster's redirection (`MOVED`, `ASK`) or its passing state (`CLUSTERDOWN`,
    /// `TRYAGAIN`): the node answered; the request goes elsewhere or later.
    pub(crate) fn is_cluster_state(&self) -> bool {
        matches!(self, Self::Redis(e) if matches!(e.code(), Some("MOVED" | "ASK" | "CLUSTERDOWN" | "TRYAGAIN")))
    }

    /// A `MOVED` or `ASK` redirection.
    pub(crate) fn is_redirect(&self) -> bool {
        matches!(self, Self::Redis(e) if e.redirect_node().is_some())
    }

    /// Whether this error says Redis is unreachable or unhealthy (as opposed to a bad command
    /// or value); only these trip the circuit breaker.
    pub fn is_connection_class(&self) -> bool {
        match self {
            Self::BreakerOpen | Self::Timeout(_) | Self::Authentication(_) => true,
            Self::Redis(e) => is_connection_class(e),
            Self::Encode(_)
            | Self::TooLarge { .. }
            | Self::InvalidTags(_)
            | Self::NoRuntime
            | Self::Disabled
            | Self::Unconfirmed { .. }
            | Self::Topology(_) => false,
        }
    }
}

pub(crate) fn is_authentication(error: &RedisError) -> bool {
    error.kind() == ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("WRONGPASS" | "NOAUTH"))
}

/// I/O failures, dropped connections, and server states that mean "not serving now".
pub(crate) fn is_connection_class(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || is_authentication(error)
        || matches!(
            error.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::TryAgain
                )
        )
}
