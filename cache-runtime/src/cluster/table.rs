//! Which master owns each hash slot, from `CLUSTER SLOTS`.

use std::sync::Arc;

use redis::Value;

use super::slot::SLOTS;
use crate::connection::Node;

/// A slot no master covers (its shard is down, or the cluster is still forming).
const UNCOVERED: u16 = u16::MAX;

/// The cluster as one `CLUSTER SLOTS` answer described it.
#[derive(Debug)]
pub(crate) struct SlotTable {
    /// Per slot, its master's index in `masters`, or [`UNCOVERED`].
    owners: Box<[u16]>,
    masters: Vec<Arc<Node>>,
    /// How many replicas each master has, by its index.
    replica_counts: Vec<usize>,
    /// Every replica's `host:port`, for the bus subscription.
    replicas: Vec<String>,
}

/// One shard of a `CLUSTER SLOTS` answer: a slot range, its master and its replicas.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Range {
    pub(crate) first: u16,
    pub(crate) last: u16,
    pub(crate) master: String,
    pub(crate) replicas: Vec<String>,
}

impl SlotTable {
    /// A table before the first answer: every slot uncovered.
    pub(crate) fn empty() -> Self {
        Self {
            owners: vec![UNCOVERED; SLOTS].into_boxed_slice(),
            masters: Vec::new(),
            replica_counts: Vec::new(),
            replicas: Vec::new(),
        }
    }

    /// A table over `ranges`, each master's node from `node` (which keeps a known node's
    /// connections and breaker).
    pub(crate) fn new(ranges: &[Range], mut node: impl FnMut(&str) -> Arc<Node>) -> Self {
        let mut table = Self::empty();
        for range in ranges {
            let index = match table.masters.iter().position(|m| m.address == range.master) {
                Some(index) => index,
                None => {
                    table.masters.push(node(&range.master));
                    table.replica_counts.push(0);
                    table.masters.len() - 1
                }
            };
            table.replica_counts[index] = table.replica_counts[index].max(range.replicas.len());
            let index = u16::try_from(index).unwrap_or(UNCOVERED);
            let slots = usize::from(range.first)..=usize::from(range.last).min(SLOTS - 1);
            table.owners[slots].fill(index);
            for replica in &range.replicas {
                if !table.replicas.contains(replica) {
                    table.replicas.push(replica.clone());
                }
            }
        }
        table
    }

    /// The master of `slot`, if one covers it.
    #[inline]
    pub(crate) fn master(&self, slot: u16) -> Option<&Arc<Node>> {
        let index = *self.owners.get(usize::from(slot))?;
        self.masters.get(usize::from(index))
    }

    /// How many replicas the master of `slot` has.
    pub(crate) fn replicas_of(&self, slot: u16) -> usize {
        let index = self
            .owners
            .get(usize::from(slot))
            .copied()
            .unwrap_or(UNCOVERED);
        self.replica_counts
            .get(usize::from(index))
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn masters(&self) -> &[Arc<Node>] {
        &self.masters
    }

    pub(crate) fn replicas(&self) -> &[String] {
        &self.replicas
    }

    /// How many slots no master covers.
    pub(crate) fn uncovered(&self) -> usize {
        self.owners.iter().filter(|&&o| o == UNCOVERED).count()
    }
}

/// The shards of a `CLUSTER SLOTS` answer: `[[first, last, [host, port, id, …], replica…], …]`.
/// A node announced without a host (`""` or `?`) is reached at `fallback_host`.
pub(crate) fn parse_slots(answer: &Value, fallback_host: &str) -> Option<Vec<Range>> {
    let Value::Array(shards) = answer else {
        return None;
    };
    shards
        .iter()
        .map(|shard| {
            let Value::Array(fields) = shard else {
                return None;
            };
            let number = |v: &Value| match v {
                Value::Int(n) => u16::try_from(*n).ok(),
                _ => None,
            };
            let first = number(fields.first()?)?;
            let last = number(fields.get(1)?)?;
            let mut nodes = fields[2..].iter().map(|node| address(node, fallback_host));
            let master = nodes.next()??;
            let replicas = nodes.flatten().collect();
            Some(Range {
                first,
                last,
                master,
                replicas,
            })
        })
        .collect()
}

/// `host:port` of one node entry `[host, port, id, …]`.
fn address(node: &Value, fallback_host: &str) -> Option<String> {
    let Value::Array(fields) = node else {
        return None;
    };
    let host = match fields.first()? {
        Value::BulkString(host) => String::from_utf8_lossy(host).into_owned(),
        Value::SimpleString(host) => host.clone(),
        _ => return None,
    };
    let host = match host.as_str() {
        "" | "?" => fallback_host.to_owned(),
        _ => host,
    };
    let Value::Int(port) = fields.get(1)? else {
        return None;
    };
    Some(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use redis::Value;

    use super::{Range, parse_slots};

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    #[test]
    fn cluster_slots_answers_parse() {
        let answer = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("127.0.0.1", 7000),
                node("127.0.0.1", 7003),
            ]),
            Value::Array(vec![Value::Int(5461), Value::Int(16383), node("", 7001)]),
        ]);
        assert_eq!(
            parse_slots(&answer, "10.0.0.1"),
            Some(vec![
                Range {
                    first: 0,
                    last: 5460,
                    master: "127.0.0.1:7000".into(),
                    replicas: vec!["127.0.0.1:7003".into()],
                },
                Range {
                    first: 5461,
                    last: 16383,
                    master: "10.0.0.1:7001".into(),
                    replicas: vec![],
                },
            ])
        );
        assert_eq!(parse_slots(&Value::Int(1), "h"), None);
        assert_eq!(
            parse_slots(&Value::Array(vec![Value::Array(vec![])]), "h"),
            None
        );
    }
}
