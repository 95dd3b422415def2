//! Where each command goes on a cluster: the master of its key's slot. Commands without a key
//! (`PUBLISH`, `INFO`) ride with the command before them, so an event is published by the
//! node that took the write it announces, after it.

use redis::{Arg, Cmd, Value};

use super::slot::slot;

/// Where one command goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The master of this slot.
    Slot(u16),
    /// Any node: it names no key.
    Keyless,
    /// Several keys in several slots (`UNLINK a b`): split per slot, answers summed.
    Split,
}

/// The command's name, uppercase-insensitive bytes.
fn name(cmd: &Cmd) -> &[u8] {
    match cmd.args_iter().next() {
        Some(Arg::Simple(name)) => name,
        _ => b"",
    }
}

/// Commands whose answer is a count over their keys, so a cross-slot one can be split.
const SUMMED: [&str; 4] = ["UNLINK", "DEL", "EXISTS", "TOUCH"];

/// Commands that name no key.
const KEYLESS: [&str; 14] = [
    "PUBLISH", "INFO", "PING", "SCRIPT", "CLUSTER", "WAIT", "TIME", "CLIENT", "CONFIG", "SCAN",
    "DBSIZE", "ECHO", "ASKING", "COMMAND",
];

/// Where `cmd` goes.
pub(crate) fn target(cmd: &Cmd) -> Target {
    let name = name(cmd);
    let mut args = cmd.args_iter().skip(1).filter_map(|arg| match arg {
        Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    let key = if name.eq_ignore_ascii_case(b"EVALSHA") || name.eq_ignore_ascii_case(b"EVAL") {
        let _script = args.next();
        let keys = args
            .next()
            .and_then(|n| std::str::from_utf8(n).ok()?.parse::<u32>().ok());
        match keys {
            Some(1..) => args.next(),
            _ => None,
        }
    } else if name.eq_ignore_ascii_case(b"MEMORY") || name.eq_ignore_ascii_case(b"OBJECT") {
        let _subcommand = args.next();
        args.next()
    } else if KEYLESS
        .iter()
        .any(|k| name.eq_ignore_ascii_case(k.as_bytes()))
    {
        None
    } else if SUMMED
        .iter()
        .any(|k| name.eq_ignore_ascii_case(k.as_bytes()))
    {
        let mut slots = args.map(slot);
        let Some(first) = slots.next() else {
            return Target::Keyless;
        };
        return match slots.all(|s| s == first) {
            true => Target::Slot(first),
            false => Target::Split,
        };
    } else {
        args.next()
    };
    key.map_or(Target::Keyless, |key| Target::Slot(slot(key)))
}

/// Whether `cmd` is a plain `GET`, whose failure can stand for a miss.
pub(crate) fn is_read(cmd: &Cmd) -> bool {
    name(cmd).eq_ignore_ascii_case(b"GET")
}

/// A cross-slot `UNLINK`/`DEL`/`EXISTS`/`TOUCH` as one command per slot, in slot order.
pub(crate) fn split_by_slot(cmd: &Cmd) -> Vec<(u16, Cmd)> {
    let mut parts: Vec<(u16, Cmd)> = Vec::new();
    for key in cmd.args_iter().skip(1) {
        let Arg::Simple(key) = key else { continue };
        let key_slot = slot(key);
        match parts.iter_mut().find(|(s, _)| *s == key_slot) {
            Some((_, part)) => {
                part.arg(key);
            }
            None => {
                let mut part = redis::cmd(std::str::from_utf8(name(cmd)).unwrap_or("UNLINK"));
                part.arg(key);
                parts.push((key_slot, part));
            }
        }
    }
    parts
}

/// Each command's target in a pipeline, keyless ones taking the slot of the keyed command
/// before them (or after, for leading ones); `None` for a pipeline with no key at all.
pub(crate) fn pipeline_slots<'a>(commands: impl Iterator<Item = &'a Cmd>) -> Vec<Target> {
    let mut targets: Vec<Target> = Vec::new();
    let mut last = None;
    for cmd in commands {
        let target = match target(cmd) {
            Target::Keyless => last.map_or(Target::Keyless, Target::Slot),
            other => other,
        };
        if let Target::Slot(s) = target {
            last = Some(s);
        }
        targets.push(target);
    }
    // Leading keyless commands go with the first keyed one.
    if let Some(first) = targets.iter().find_map(|t| match t {
        Target::Slot(s) => Some(*s),
        _ => None,
    }) {
        for target in &mut targets {
            match target {
                Target::Keyless => *target = Target::Slot(first),
                _ => break,
            }
        }
    }
    targets
}

/// What a cross-slot command answers: the sum of its parts' counts.
pub(crate) fn sum(answers: &[Value]) -> Value {
    Value::Int(
        answers
            .iter()
            .map(|a| match a {
                Value::Int(n) => *n,
                _ => 0,
            })
            .sum(),
    )
}

/// Answers collected from several nodes, handed to the pipeline that asked, so redis-rs itself
/// drops the ignored ones and turns server errors into the error it always returns.
pub(crate) struct Collected(pub(crate) Option<Vec<Value>>);

impl redis::aio::ConnectionLike for Collected {
    fn req_packed_command<'a>(&'a mut self, _cmd: &'a Cmd) -> redis::RedisFuture<'a, Value> {
        let value = self
            .0
            .take()
            .and_then(|mut values| values.pop())
            .unwrap_or(Value::Nil);
        Box::pin(std::future::ready(Ok(value)))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        _pipeline: &'a redis::Pipeline,
        _offset: usize,
        _count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        Box::pin(std::future::ready(Ok(self.0.take().unwrap_or_default())))
    }

    fn get_db(&self) -> i64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::{Target, pipeline_slots, split_by_slot, target};
    use crate::cluster::slot::slot;

    #[test]
    fn each_command_goes_to_its_keys_slot() {
        let key = "shop:v1:product:42";
        let at_key = Target::Slot(slot(key.as_bytes()));
        assert_eq!(target(redis::cmd("GET").arg(key)), at_key);
        assert_eq!(
            target(redis::cmd("EVALSHA").arg("abc").arg(2).arg(key).arg("x")),
            at_key
        );
        assert_eq!(
            target(redis::cmd("EVALSHA").arg("abc").arg(0)),
            Target::Keyless
        );
        assert_eq!(target(redis::cmd("MEMORY").arg("USAGE").arg(key)), at_key);
        assert_eq!(
            target(redis::cmd("PUBLISH").arg("c").arg("m")),
            Target::Keyless
        );
        assert_eq!(target(redis::cmd("UNLINK").arg(key)), at_key);
        assert_eq!(
            target(
                redis::cmd("UNLINK")
                    .arg(key)
                    .arg(format!("{{{key}}}:%lease"))
            ),
            at_key
        );
        assert_eq!(
            target(redis::cmd("UNLINK").arg("a").arg("b")),
            Target::Split
        );
    }

    #[test]
    fn cross_slot_unlinks_split_per_slot() {
        let parts = split_by_slot(redis::cmd("UNLINK").arg("a").arg("b").arg("{a}x"));
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0, slot(b"a"));
        assert_eq!(parts[0].1.args_iter().count(), 3);
    }

    #[test]
    fn keyless_commands_ride_with_their_neighbours() {
        let mut pipe = redis::pipe();
        pipe.cmd("PUBLISH").arg("c").arg("m");
        pipe.cmd("SET").arg("a").arg(1);
        pipe.cmd("PUBLISH").arg("c").arg("m");
        pipe.cmd("SET").arg("b").arg(1);
        pipe.cmd("PUBLISH").arg("c").arg("m");
        let (a, b) = (Target::Slot(slot(b"a")), Target::Slot(slot(b"b")));
        assert_eq!(pipeline_slots(pipe.cmd_iter()), vec![a, a, a, b, b]);
        let mut keyless = redis::pipe();
        keyless.cmd("PING");
        assert_eq!(pipeline_slots(keyless.cmd_iter()), vec![Target::Keyless]);
    }
}
