//! Every Redis round trip: under the circuit breaker and the operation deadline.

use std::future::Future;

use futures_util::future::Either;
use redis::{Cmd, FromRedisValue, Pipeline, RedisResult};

use super::Cache;
use super::topology::Topology;
use crate::cluster::route::{self, Target};
use crate::connection::{Node, Pool};
use crate::entity::Entity;
use crate::error::{CacheError, is_authentication};
use crate::metrics::bump;
use crate::script;

/// One command or one pipeline.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Request<'a> {
    Cmd(&'a Cmd),
    Pipeline(&'a Pipeline),
}

impl<'a> From<&'a Cmd> for Request<'a> {
    fn from(cmd: &'a Cmd) -> Self {
        Self::Cmd(cmd)
    }
}

impl<'a> From<&'a mut Cmd> for Request<'a> {
    fn from(cmd: &'a mut Cmd) -> Self {
        Self::Cmd(cmd)
    }
}

impl<'a> From<&'a Pipeline> for Request<'a> {
    fn from(pipeline: &'a Pipeline) -> Self {
        Self::Pipeline(pipeline)
    }
}

impl Request<'_> {
    async fn send<T: FromRedisValue>(
        self,
        conn: &mut redis::aio::MultiplexedConnection,
    ) -> RedisResult<T> {
        match self {
            Self::Cmd(cmd) => reply(conn.send_packed_command(cmd).await),
            Self::Pipeline(pipeline) => pipeline.query_async(conn).await,
        }
    }
}

/// A call's future on the paths that are not the hit path.
type Boxed<'a, T> = std::pin::Pin<Box<dyn Future<Output = Result<T, CacheError>> + Send + 'a>>;

/// A single command's reply as `T` (what `query_async` does after sending, which sends through
/// a boxed future: an allocation per command).
#[inline]
fn reply<T: FromRedisValue>(sent: RedisResult<redis::Value>) -> RedisResult<T> {
    Ok(redis::from_redis_value(sent?.extract_error()?)?)
}

impl Cache {
    /// Runs `request`, counting a failure against `entity`. (Not an `async fn`: the hit path
    /// polls one future less.)
    pub(crate) fn redis<'a, T: FromRedisValue + Send + 'a>(
        &'a self,
        entity: &'a Entity,
        request: impl Into<Request<'a>>,
    ) -> impl Future<Output = Result<T, CacheError>> + 'a {
        self.call_for(Some(entity), request.into())
    }

    /// Runs `request` under the breaker and the operation deadline.
    pub(crate) fn call<'a, T: FromRedisValue + Send + 'a>(
        &'a self,
        request: Request<'a>,
    ) -> impl Future<Output = Result<T, CacheError>> + 'a {
        self.call_for(None, request)
    }

    /// Runs `request` under the breaker and the operation deadline, counting a failure against
    /// `entity` if given: on the one Redis, or on the cluster's masters its keys hash to.
    ///
    /// Where it goes is decided here, before the future is built, so the hit path (one Redis,
    /// or one key's master) awaits the node's call itself: no async layer of its own, nothing
    /// boxed. The rest (a pipeline spanning nodes, the first call) is boxed.
    pub(crate) fn call_for<'a, T: FromRedisValue + Send + 'a>(
        &'a self,
        entity: Option<&'a Entity>,
        request: Request<'a>,
    ) -> impl Future<Output = Result<T, CacheError>> + Send + 'a {
        if self.is_disabled() {
            let disabled: Boxed<'a, T> = Box::pin(async { Err(CacheError::Disabled) });
            return Either::Right(Either::Right(disabled));
        }
        self.keep_tasks_alive();
        let redis = &self.inner.redis;
        let cluster = match (redis.topology(), &redis.cluster) {
            (Some(Topology::Node), _) | (Some(Topology::Cluster), None) => {
                return Either::Left(self.call_node(entity, &redis.seed, request));
            }
            (Some(Topology::Cluster), Some(cluster)) => cluster,
            _ => {
                let later: Boxed<'a, T> = Box::pin(self.call_later(entity, request));
                return Either::Right(Either::Right(later));
            }
        };
        let slot = match request {
            Request::Cmd(cmd) => match route::target(cmd) {
                Target::Slot(slot) => slot,
                Target::Keyless => cluster.home_slot(),
                Target::Split => {
                    let split: Boxed<'a, T> = Box::pin(self.call_split(entity, cluster, cmd));
                    return Either::Right(Either::Right(split));
                }
            },
            Request::Pipeline(pipeline) => {
                let split: Boxed<'a, T> = Box::pin(self.call_pipeline(entity, cluster, pipeline));
                return Either::Right(Either::Right(split));
            }
        };
        Either::Right(Either::Left(self.call_slot(entity, cluster, slot, request)))
    }

    /// A call before the topology is known (found first), or against a refused one.
    async fn call_later<T: FromRedisValue + Send>(
        &self,
        entity: Option<&Entity>,
        request: Request<'_>,
    ) -> Result<T, CacheError> {
        let refused = |error: CacheError| {
            if let Some(entity) = entity {
                bump(&entity.counters().redis_errors);
            }
            Err(error)
        };
        match self.topology().await {
            Ok(Topology::Refused(why)) => refused(CacheError::Topology(why.clone())),
            Ok(_) => self.call_for(entity, request).await,
            Err(error) => refused(error),
        }
    }

    /// Runs `request` on `node`, under its breaker and the operation deadline.
    pub(crate) fn call_node<'a, T: FromRedisValue + 'a>(
        &'a self,
        entity: Option<&'a Entity>,
        node: &'a Node,
        request: Request<'a>,
    ) -> impl Future<Output = Result<T, CacheError>> + 'a {
        self.call_on_pool(entity, node, &node.pool, request)
    }

    /// Runs `request` on one of `node`'s pools (its shared one, or the one for writes whose
    /// replication is waited for), under the node's breaker and the operation deadline.
    pub(crate) async fn call_on_pool<T: FromRedisValue>(
        &self,
        entity: Option<&Entity>,
        node: &Node,
        pool: &Pool,
        request: Request<'_>,
    ) -> Result<T, CacheError> {
        let failed = |error: CacheError| {
            if let (Some(entity), false) = (entity, error.is_redirect()) {
                bump(&entity.counters().redis_errors);
            }
            Err(error)
        };
        let inner = &*self.inner;
        let Some(permit) = node.breaker.permit() else {
            return failed(CacheError::BreakerOpen);
        };
        // The connection the request last went on, to replace if it failed.
        let mut used = None;
        let attempt = async {
            let (ticket, conn) = match pool.next_connected() {
                Ok((ticket, conn)) => (ticket, Ok(conn)),
                Err(index) => pool.connect_slot(index).await,
            };
            used = Some(ticket);
            let mut conn = conn?;
            // The command itself, not through `send`: one future less on the hit path.
            let sent = match request {
                Request::Cmd(cmd) => reply(conn.send_packed_command(cmd).await),
                Request::Pipeline(pipeline) => pipeline.query_async(&mut conn).await,
            };
            match sent {
                // A connection left over from before a Redis restart reports its death once
                // (refused, reset, broken pipe): the request goes once more on a fresh one.
                // Every request the cache sends is idempotent, so one that did reach the old
                // server is safe to repeat. Without this, the breaker's probe after a restart
                // failed on the dead socket and reopened it for a whole cooldown.
                Err(error) if is_dead_connection(&error) => {
                    pool.replace(ticket);
                    let (ticket, conn) = pool.connection().await;
                    used = Some(ticket);
                    Box::pin(request.send(&mut conn?)).await
                }
                // The server lost its scripts (a restart, `SCRIPT FLUSH`): every request the
                // cache sends can be repeated, so it goes again once they are loaded.
                Err(error) if script::is_missing(&error) => {
                    Box::pin(async {
                        script::load_all(&mut conn).await?;
                        request.send(&mut conn).await
                    })
                    .await
                }
                other => other,
            }
        };
        #[cfg(feature = "metrics")]
        let started = std::time::Instant::now();
        let result = inner.deadlines.bound(attempt).await;
        #[cfg(feature = "metrics")]
        inner
            .redis_times
            .get_or_init(|| crate::export::RedisTimes::new(&inner.config.app_prefix))
            .record(
                match &result {
                    Ok(Ok(_)) => Ok(true),
                    Ok(Err(_)) => Ok(false),
                    Err(_) => Err(()),
                },
                started.elapsed(),
            );
        let replace = |used: Option<_>| {
            if let Some(ticket) = used {
                pool.replace(ticket);
            }
        };
        match result {
            Err(_) => {
                replace(used);
                let cause = format!("no answer within {:?}", inner.config.operation_timeout);
                node.breaker.record(permit, Err(&cause));
                failed(CacheError::Timeout(inner.config.operation_timeout))
            }
            Ok(Ok(value)) => {
                node.breaker.record(permit, Ok(()));
                Ok(value)
            }
            Ok(Err(error)) => {
                if is_authentication(&error) || is_dead_connection(&error) {
                    replace(used);
                }
                inner.scripts.after_error(&error);
                let error = CacheError::from_redis(error);
                // A cluster's redirection or `CLUSTERDOWN` is an answer: this node is up.
                let outcome = match error.is_connection_class() && !error.is_cluster_state() {
                    true => Err(&error as &dyn std::fmt::Display),
                    false => Ok(()),
                };
                node.breaker.record(permit, outcome);
                failed(error)
            }
        }
    }
}

/// The connection an error came from is unusable: the next request needs a fresh one.
fn is_dead_connection(error: &redis::RedisError) -> bool {
    error.is_connection_refusal()
        || error.is_connection_dropped()
        || error.is_io_error()
        || error.is_unrecoverable_error()
}
