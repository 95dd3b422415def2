//! Requests on a Redis Cluster: each to the master of its slot, a pipeline split per node and
//! sent to all at once, a redirection followed once.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::join_all;
use redis::{Cmd, FromRedisValue, Pipeline, Value};

use super::Cache;
use super::redis_call::Request;
use crate::cluster::Cluster;
use crate::cluster::route::{self, Collected, Target};
use crate::connection::Node;
use crate::entity::Entity;
use crate::error::CacheError;

/// One node's share of a split pipeline: the commands with their places in it.
type Group = (Arc<Node>, Vec<(usize, Cmd)>);

/// A slot no master covers now: its shard is failing over (or the cluster lost it). Counted as
/// Redis unavailable for that key only; no breaker records it.
fn uncovered(slot: u16) -> CacheError {
    CacheError::Redis(redis::RedisError::from((
        redis::ErrorKind::Server(redis::ServerErrorKind::ClusterDown),
        "no master covers the slot",
        slot.to_string(),
    )))
}

impl Cache {
    /// Reads the slot table again in the background (after a redirection, or a slot found
    /// uncovered), unless a refresh is already under way.
    pub(crate) fn refresh_topology_soon(&self, cluster: &Cluster) {
        // One at a time: a burst of redirections (a slot moving) spawns one refresh.
        if !cluster.claim_refresh() {
            return;
        }
        let seen = cluster.generation();
        let cache = self.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            cluster.release_refresh();
            return;
        };
        runtime.spawn(async move {
            if let Some(cluster) = cache.inner.redis.cluster.as_ref() {
                if let Err(error) = cluster.refresh(seen).await {
                    tracing::debug!(%error, "could not read the cluster's slots");
                }
                cluster.release_refresh();
            }
        });
    }

    /// `request` on the master of `slot`, following one redirection.
    pub(crate) async fn call_slot<T: FromRedisValue + Send>(
        &self,
        entity: Option<&Entity>,
        cluster: &Cluster,
        slot: u16,
        request: Request<'_>,
    ) -> Result<T, CacheError> {
        let Some(node) = cluster.master(slot) else {
            self.refresh_topology_soon(cluster);
            return Err(uncovered(slot));
        };
        match self.call_node(entity, &node, request).await {
            Err(CacheError::Redis(error)) if error.redirect_node().is_some() => {
                Box::pin(self.redirected(entity, cluster, &error, request)).await
            }
            // A pipeline's redirection names no node: the table is stale, read it again.
            Err(CacheError::Redis(error)) if matches!(error.code(), Some("MOVED" | "ASK")) => {
                let error = CacheError::Redis(error);
                self.refresh_topology_soon(cluster);
                Err(error)
            }
            other => other,
        }
    }

    /// Sends `request` where a `MOVED` or `ASK` answer said, once. A `MOVED` also has the slot
    /// table read again.
    async fn redirected<T: FromRedisValue + Send>(
        &self,
        entity: Option<&Entity>,
        cluster: &Cluster,
        error: &redis::RedisError,
        request: Request<'_>,
    ) -> Result<T, CacheError> {
        let ask = error.code() == Some("ASK");
        if !ask {
            self.refresh_topology_soon(cluster);
        }
        let node = error
            .redirect_node()
            .and_then(|(address, _)| cluster.node(address));
        let Some(node) = node else {
            return Err(CacheError::Redis(error.clone()));
        };
        match (ask, request) {
            (true, Request::Cmd(cmd)) => {
                let mut asking = redis::pipe();
                asking.cmd("ASKING").ignore().add_command(cmd.clone());
                let (answer,): (T,) = self.call_node(entity, &node, (&asking).into()).await?;
                Ok(answer)
            }
            _ => self.call_node(entity, &node, request).await,
        }
    }

    /// A command whose keys hash to several slots (`UNLINK a b`): one per slot, at once, the
    /// counts added up.
    pub(crate) async fn call_split<T: FromRedisValue + Send>(
        &self,
        entity: Option<&Entity>,
        cluster: &Cluster,
        cmd: &Cmd,
    ) -> Result<T, CacheError> {
        let parts = route::split_by_slot(cmd);
        let answers = join_all(parts.iter().map(|(slot, part)| {
            self.call_slot::<Value>(entity, cluster, *slot, Request::Cmd(part))
        }))
        .await;
        let answers: Vec<Value> = answers.into_iter().collect::<Result<_, _>>()?;
        redis::from_redis_value(route::sum(&answers)).map_err(|e| CacheError::from_redis(e.into()))
    }

    /// A pipeline: sent whole when all its keys live on one node (a write and its event, a
    /// lease and its value), else split per node, sent at once and put back in order; the
    /// answer is then what one Redis would have given.
    pub(crate) async fn call_pipeline<T: FromRedisValue + Send>(
        &self,
        entity: Option<&Entity>,
        cluster: &Cluster,
        pipeline: &Pipeline,
    ) -> Result<T, CacheError> {
        let targets = route::pipeline_slots(pipeline.cmd_iter());
        // The commands, each once per part (a cross-slot `UNLINK` is several), with its node.
        let mut parts: Vec<(usize, Arc<Node>, Cmd)> = Vec::new();
        for (index, (cmd, target)) in pipeline.cmd_iter().zip(&targets).enumerate() {
            let split = match target {
                Target::Slot(slot) => vec![(*slot, cmd.clone())],
                Target::Keyless => vec![(cluster.home_slot(), cmd.clone())],
                Target::Split => route::split_by_slot(cmd),
            };
            for (slot, part) in split {
                let Some(node) = cluster.master(slot) else {
                    self.refresh_topology_soon(cluster);
                    return Err(uncovered(slot));
                };
                parts.push((index, node, part));
            }
        }
        let one_node = parts.windows(2).all(|w| Arc::ptr_eq(&w[0].1, &w[1].1));
        if one_node && parts.len() == pipeline.len() {
            let slot = match targets.first() {
                Some(Target::Slot(slot)) => *slot,
                _ => cluster.home_slot(),
            };
            return self
                .call_slot(entity, cluster, slot, Request::Pipeline(pipeline))
                .await;
        }
        let mut groups: HashMap<&str, Group> = HashMap::new();
        for (index, node, cmd) in &parts {
            groups
                .entry(node.address.as_str())
                .or_insert_with(|| (node.clone(), Vec::new()))
                .1
                .push((*index, cmd.clone()));
        }
        let sent = join_all(
            groups
                .values()
                .map(|(node, cmds)| self.send_group(entity, cluster, node, cmds)),
        )
        .await;
        // A batch of reads (`get_many`) answers a dead master's keys as misses and the rest as
        // usual; anything else fails whole, as it would on one Redis.
        let reads_only = pipeline.cmd_iter().all(route::is_read);
        let mut answers: Vec<Vec<Value>> = vec![Vec::new(); pipeline.len()];
        for (group, values) in groups.values().zip(sent) {
            let values = match values {
                Ok(values) => values,
                Err(error) if reads_only && error.is_connection_class() => {
                    vec![Value::Nil; group.1.len()]
                }
                Err(error) => return Err(error),
            };
            for ((index, _), value) in group.1.iter().zip(values) {
                answers[*index].push(value);
            }
        }
        let answers = answers
            .into_iter()
            .map(|mut parts| match parts.len() {
                1 => parts.pop().unwrap_or(Value::Nil),
                _ => route::sum(&parts),
            })
            .collect();
        pipeline
            .query_async(&mut Collected(Some(answers)))
            .await
            .map_err(CacheError::from_redis)
    }

    /// One node's share of a split pipeline: every answer, errors included; a command that
    /// was redirected is sent again where it belongs, once.
    async fn send_group(
        &self,
        entity: Option<&Entity>,
        cluster: &Cluster,
        node: &Node,
        cmds: &[(usize, Cmd)],
    ) -> Result<Vec<Value>, CacheError> {
        let mut group = redis::pipe();
        for (_, cmd) in cmds {
            group.add_command(cmd.clone());
        }
        let mut values: Vec<Value> = self
            .call_node(entity, node, (&*group.clone().ignore_errors()).into())
            .await?;
        if missing_script(&values) {
            // Sent again as a plain pipeline: the node's scripts are loaded on the way.
            values = self.call_node(entity, node, (&group).into()).await?;
        }
        for (value, (_, cmd)) in values.iter_mut().zip(cmds) {
            let Value::ServerError(error) = value else {
                continue;
            };
            let error = redis::RedisError::from(error.clone());
            if error.redirect_node().is_some() {
                *value = self
                    .redirected(entity, cluster, &error, Request::Cmd(cmd))
                    .await?;
            }
        }
        Ok(values)
    }

    /// An invalidation's or an explicit write's pipeline (its keys on one node, its event after
    /// them), confirmed by the shard's replicas: on a cluster it goes on the master's connection for confirmed
    /// writes, followed by `WAIT <replicas> <half the operation timeout>`. Fewer
    /// confirmations are [`CacheError::Unconfirmed`]: the caller keeps the invalidation for
    /// replay, so it reaches whichever node owns the slot after a failover. Elsewhere it is
    /// sent as usual.
    pub(crate) async fn call_confirmed<T: FromRedisValue + Send>(
        &self,
        entity: Option<&Entity>,
        pipeline: &Pipeline,
    ) -> Result<T, CacheError> {
        let Some(cluster) = self.inner.redis.found_cluster() else {
            return self.call_for(entity, Request::Pipeline(pipeline)).await;
        };
        let targets = route::pipeline_slots(pipeline.cmd_iter());
        let slot = targets
            .iter()
            .find_map(|t| match t {
                Target::Slot(slot) => Some(*slot),
                _ => None,
            })
            .unwrap_or_else(|| cluster.home_slot());
        let replicas = cluster.replicas_of(slot);
        let node = cluster.master(slot).filter(|_| replicas > 0);
        // `WAIT` confirms one connection's writes on one node: a request spread over several
        // (a variant written beside its id's token on another master) goes unconfirmed.
        let one_node = node.as_ref().is_some_and(|node| {
            targets.iter().all(|t| match t {
                Target::Slot(s) => cluster.master(*s).is_some_and(|m| Arc::ptr_eq(&m, node)),
                Target::Keyless => true,
                Target::Split => false,
            })
        });
        let Some(node) = node.filter(|_| one_node) else {
            return self.call_for(entity, Request::Pipeline(pipeline)).await;
        };
        let wait_ms = (self.inner.config.operation_timeout / 2).as_millis().max(1);
        // Every answer, the ignored ones too: they are put back through `pipeline` below.
        let mut confirmed = redis::pipe();
        for cmd in pipeline.cmd_iter() {
            confirmed.add_command(cmd.clone());
        }
        confirmed.cmd("WAIT").arg(replicas).arg(wait_ms as u64);
        confirmed.ignore_errors();
        let mut answers: Vec<Value> = Vec::new();
        for attempt in 0..2 {
            answers = self
                .call_on_pool(entity, &node, &node.confirmed, (&confirmed).into())
                .await?;
            if attempt == 1 || !missing_script(&answers) {
                break;
            }
            // A node that does not hold a script yet (new, restarted or promoted): its scripts
            // are loaded, then the request sent again. Two calls, each within the operation
            // timeout: one call holding two `WAIT`s would not be.
            let digests: Vec<String> = self
                .call_on_pool(
                    entity,
                    &node,
                    &node.confirmed,
                    (&crate::script::load_all_pipeline()).into(),
                )
                .await?;
            crate::script::check_loaded(&digests).map_err(CacheError::from_redis)?;
        }
        if let Some(Value::ServerError(error)) =
            answers.iter().find(|a| matches!(a, Value::ServerError(_)))
        {
            let error = redis::RedisError::from(error.clone());
            if error.redirect_node().is_some() {
                self.refresh_topology_soon(cluster);
            }
            return Err(CacheError::from_redis(error));
        }
        let acked = match answers.pop() {
            Some(Value::Int(acked)) => usize::try_from(acked).unwrap_or(0),
            _ => 0,
        };
        if acked < replicas {
            return Err(CacheError::Unconfirmed { acked, replicas });
        }
        pipeline
            .query_async(&mut Collected(Some(answers)))
            .await
            .map_err(CacheError::from_redis)
    }
}

/// Whether a node answered `NOSCRIPT` to any command of a pipeline sent with its errors kept
/// as answers.
fn missing_script(values: &[Value]) -> bool {
    values
        .iter()
        .any(|v| matches!(v, Value::ServerError(e) if e.code() == "NOSCRIPT"))
}
