//! One client connection: commands in, replies out, and pub/sub once subscribed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::broadcast;

use super::resp::{Parsed, Reply, parse};
use super::{Message, Shared, commands};

/// The channels a connection subscribes to (each with the number of the last message published
/// before it did), counted in the store while it does.
struct Subscriptions {
    shared: Arc<Shared>,
    channels: HashMap<Vec<u8>, u64>,
    messages: Option<broadcast::Receiver<Message>>,
}

impl Subscriptions {
    /// Subscribes to `channel`; answers the confirmation Redis sends.
    fn add(&mut self, channel: Vec<u8>) -> Reply {
        let published = self.shared.published.load(Ordering::SeqCst);
        if self.channels.insert(channel.clone(), published).is_none() {
            *self
                .shared
                .store()
                .subscribers
                .entry(channel.clone())
                .or_default() += 1;
        }
        if self.messages.is_none() {
            self.messages = Some(self.shared.messages.subscribe());
        }
        self.confirm("subscribe", channel)
    }

    fn remove(&mut self, channel: Vec<u8>) -> Reply {
        if self.channels.remove(&channel).is_some() {
            forget(&mut self.shared.store().subscribers, &channel);
        }
        if self.channels.is_empty() {
            self.messages = None;
        }
        self.confirm("unsubscribe", channel)
    }

    fn confirm(&self, kind: &'static str, channel: Vec<u8>) -> Reply {
        Reply::Array(vec![
            Reply::bulk(kind),
            Reply::Bulk(channel),
            Reply::int(self.channels.len()),
        ])
    }
}

fn forget(subscribers: &mut std::collections::HashMap<Vec<u8>, usize>, channel: &[u8]) {
    if let Some(count) = subscribers.get_mut(channel) {
        *count -= 1;
        if *count == 0 {
            subscribers.remove(channel);
        }
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        let mut store = self.shared.store();
        for channel in self.channels.keys() {
            forget(&mut store.subscribers, channel);
        }
    }
}

pub(super) async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut frozen = shared.frozen.subscribe();
    let mut kills = shared.subscriber_kills.subscribe();
    // The user `AUTH` named (`None`: the default user, who may run everything).
    let mut user = None;
    let mut subscriptions = Subscriptions {
        shared: shared.clone(),
        channels: HashMap::new(),
        messages: None,
    };
    let mut input = Vec::with_capacity(4096);
    let mut output = Vec::with_capacity(4096);
    let mut chunk = vec![0; 64 * 1024];
    loop {
        while *frozen.borrow_and_update() {
            if frozen.changed().await.is_err() {
                return;
            }
        }
        // What this read brought, per command: one burst.
        let mut burst: HashMap<Vec<u8>, usize> = HashMap::new();
        loop {
            match parse(&input) {
                Parsed::Command(args, used) => {
                    input.drain(..used);
                    if let Some(name) = args.first() {
                        *burst.entry(name.to_ascii_lowercase()).or_default() += 1;
                    }
                    while let Some(until) = shared.paused_until(&args) {
                        // Everything after a paused command waits too, as on Redis.
                        if !output.is_empty() && stream.write_all(&output).await.is_err() {
                            return;
                        }
                        output.clear();
                        tokio::time::sleep_until(until).await;
                    }
                    match command(&shared, &mut subscriptions, &mut user, &args) {
                        Some(reply) => reply.write(&mut output),
                        None => {
                            Reply::ok().write(&mut output);
                            let _ = stream.write_all(&output).await;
                            return;
                        }
                    }
                }
                Parsed::Incomplete => break,
                Parsed::Invalid(why) => {
                    Reply::error(format!("ERR Protocol error: {why}")).write(&mut output);
                    let _ = stream.write_all(&output).await;
                    return;
                }
            }
        }
        record_burst(&shared, burst);
        if !output.is_empty() {
            if stream.write_all(&output).await.is_err() {
                return;
            }
            output.clear();
        }
        tokio::select! {
            read = stream.read(&mut chunk) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => input.extend_from_slice(&chunk[..n]),
            },
            message = next_message(&mut subscriptions.messages) => match message {
                Ok(message) => {
                    let (number, channel, payload) = &*message;
                    if subscriptions.channels.get(channel).is_some_and(|since| number > since) {
                        Reply::Array(vec![
                            Reply::bulk("message"),
                            Reply::Bulk(channel.clone()),
                            Reply::Bulk(payload.clone()),
                        ])
                        .write(&mut output);
                    }
                }
                // Fell too far behind: disconnected, as Redis disconnects a slow subscriber.
                Err(_) => return,
            },
            _ = frozen.changed() => {}
            _ = kills.changed() => if !subscriptions.channels.is_empty() {
                return;
            },
        }
    }
}

async fn next_message(
    messages: &mut Option<broadcast::Receiver<Message>>,
) -> Result<Message, broadcast::error::RecvError> {
    match messages {
        Some(messages) => messages.recv().await,
        None => std::future::pending().await,
    }
}

/// `AUTH [user] password`: the user, if its password matches.
fn authenticate(shared: &Shared, args: &[Vec<u8>]) -> Result<Option<Vec<u8>>, Reply> {
    let wrong = || Reply::error("WRONGPASS invalid username-password pair or user is disabled.");
    match args {
        // No password on the default user: any is accepted.
        [_, _] => Ok(None),
        [_, name, _] if name.as_slice() == b"default" => Ok(None),
        [_, name, password] => match shared.store().users.get(name) {
            Some(user) if user.password.as_deref() == Some(password.as_slice()) => {
                Ok(Some(name.clone()))
            }
            _ => Err(wrong()),
        },
        _ => Err(Reply::error(
            "ERR wrong number of arguments for 'auth' command",
        )),
    }
}

/// Whether `user` may run `name`.
fn permitted(shared: &Shared, user: Option<&Vec<u8>>, name: &[u8]) -> Result<(), Reply> {
    let Some(user) = user else { return Ok(()) };
    let name = String::from_utf8_lossy(name).into_owned();
    match shared.store().users.get(user) {
        Some(found) if found.denied.contains(&name) => Err(Reply::error(format!(
            "NOPERM User {} has no permissions to run the '{}' command",
            String::from_utf8_lossy(user),
            name.to_ascii_lowercase()
        ))),
        _ => Ok(()),
    }
}

/// One command's reply, or `None` to close the connection (`QUIT`).
fn command(
    shared: &Shared,
    subscriptions: &mut Subscriptions,
    user: &mut Option<Vec<u8>>,
    args: &[Vec<u8>],
) -> Option<Reply> {
    let name = args
        .first()
        .map(|n| n.to_ascii_uppercase())
        .unwrap_or_default();
    if name == b"AUTH" {
        return Some(match authenticate(shared, args) {
            Ok(authenticated) => {
                *user = authenticated;
                Reply::ok()
            }
            Err(error) => error,
        });
    }
    if let Err(refused) = permitted(shared, user.as_ref(), &name) {
        return Some(refused);
    }
    let subscribed = !subscriptions.channels.is_empty();
    match name.as_slice() {
        b"QUIT" => None,
        b"SUBSCRIBE" if shared.store().subscribe_denied => Some(Reply::error(
            "NOPERM this user has no permissions to access one of the channels used as arguments",
        )),
        b"SUBSCRIBE" if args.len() < 2 => Some(Reply::error(
            "ERR wrong number of arguments for 'subscribe' command",
        )),
        b"SUBSCRIBE" => {
            let mut replies = args[1..].iter().map(|c| subscriptions.add(c.clone()));
            // Several channels: one confirmation each, written back to back.
            let first = replies.next()?;
            let rest: Vec<Reply> = replies.collect();
            Some(match rest.is_empty() {
                true => first,
                false => Reply::Many(std::iter::once(first).chain(rest).collect()),
            })
        }
        b"UNSUBSCRIBE" => {
            let channels: Vec<Vec<u8>> = match args.len() {
                1 => subscriptions.channels.keys().cloned().collect(),
                _ => args[1..].to_vec(),
            };
            if channels.is_empty() {
                return Some(Reply::Array(vec![
                    Reply::bulk("unsubscribe"),
                    Reply::Nil,
                    Reply::Int(0),
                ]));
            }
            let replies: Vec<Reply> = channels
                .into_iter()
                .map(|c| subscriptions.remove(c))
                .collect();
            Some(Reply::Many(replies))
        }
        b"PING" if subscribed => Some(Reply::Array(vec![
            Reply::bulk("pong"),
            Reply::bulk(args.get(1).cloned().unwrap_or_default()),
        ])),
        _ if subscribed => Some(Reply::error(
            "ERR Can't execute this command: only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
        )),
        b"CLIENT"
            if args.len() == 4
                && args[1].eq_ignore_ascii_case(b"KILL")
                && args[2].eq_ignore_ascii_case(b"TYPE")
                && args[3].eq_ignore_ascii_case(b"PUBSUB") =>
        {
            shared.subscriber_kills.send_modify(|kills| *kills += 1);
            Some(Reply::Int(1))
        }
        b"CLIENT" if args.len() >= 3 && args[1].eq_ignore_ascii_case(b"PAUSE") => {
            Some(pause(shared, &args[2..]))
        }
        b"CLIENT" if args.len() == 2 && args[1].eq_ignore_ascii_case(b"UNPAUSE") => {
            shared.unpause();
            Some(Reply::ok())
        }
        b"PUBLISH" => {
            let [_, channel, payload] = args else {
                return Some(Reply::error(
                    "ERR wrong number of arguments for 'publish' command",
                ));
            };
            let receivers = {
                let mut store = shared.store();
                *store.calls.entry("publish".into()).or_default() += 1;
                store.subscribers.get(channel).copied().unwrap_or(0)
            };
            // Numbered before it is sent: a connection subscribing from now on skips it.
            let number = shared.published.fetch_add(1, Ordering::SeqCst) + 1;
            if receivers > 0 {
                let message = (number, channel.clone(), payload.clone());
                let _ = shared.messages.send(Arc::new(message));
            }
            Some(Reply::int(receivers))
        }
        b"PUBSUB" => {
            let store = shared.store();
            let channels = args.get(2..).unwrap_or_default();
            Some(Reply::Array(
                channels
                    .iter()
                    .flat_map(|c| {
                        let n = store.subscribers.get(c).copied().unwrap_or(0);
                        [Reply::Bulk(c.clone()), Reply::int(n)]
                    })
                    .collect(),
            ))
        }
        _ => Some(commands::run(&mut shared.store(), args)),
    }
}

/// `CLIENT PAUSE ms [WRITE|ALL]`.
fn pause(shared: &Shared, args: &[Vec<u8>]) -> Reply {
    let Some(ms) = std::str::from_utf8(&args[0])
        .ok()
        .and_then(|ms| ms.parse().ok())
    else {
        return Reply::error("ERR timeout is not an integer or out of range");
    };
    let duration = std::time::Duration::from_millis(ms);
    match args.get(1).map(|mode| mode.to_ascii_uppercase()).as_deref() {
        Some(b"WRITE") => shared.pause(&shared.writes_paused_until, duration),
        None | Some(b"ALL") => shared.pause(&shared.all_paused_until, duration),
        Some(_) => return super::commands::syntax(),
    }
    Reply::ok()
}

/// Commands `CLIENT PAUSE … WRITE` holds back.
const WRITES: [&[u8]; 22] = [
    b"SET",
    b"DEL",
    b"UNLINK",
    b"PEXPIRE",
    b"EXPIRE",
    b"PERSIST",
    b"GETEX",
    b"EVAL",
    b"EVALSHA",
    b"PUBLISH",
    b"SADD",
    b"SREM",
    b"HSET",
    b"HDEL",
    b"HINCRBY",
    b"RENAME",
    b"INCR",
    b"INCRBY",
    b"DECR",
    b"DECRBY",
    b"FLUSHALL",
    b"FLUSHDB",
];

/// Whether `name` (uppercase) is a write.
pub(super) fn is_write(name: &[u8]) -> bool {
    WRITES.contains(&name)
}

/// Keeps, per command, the largest burst seen.
fn record_burst(shared: &Shared, burst: HashMap<Vec<u8>, usize>) {
    if burst.is_empty() {
        return;
    }
    let mut largest = super::lock(&shared.largest_bursts);
    for (name, count) in burst {
        let seen = largest
            .entry(String::from_utf8_lossy(&name).into_owned())
            .or_default();
        *seen = (*seen).max(count);
    }
}
