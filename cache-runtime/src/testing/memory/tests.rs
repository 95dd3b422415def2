//! The in-memory Redis answering as `redis-server` does, command by command, on a synchronous
//! client (the runtime's own behaviour on it is `tests/tests/memory`).

use std::time::{Duration, Instant};

use super::MemoryRedis;

fn connect(redis: &MemoryRedis) -> redis::Connection {
    redis::Client::open(redis.url())
        .expect("url")
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("connect")
}

#[test]
fn replies_match_redis_for_edge_cases() {
    let redis = MemoryRedis::start().expect("start");
    let mut c = connect(&redis);
    let _: () = redis::cmd("SET")
        .arg("n")
        .arg(1)
        .query(&mut c)
        .expect("set");
    let overflow = redis::cmd("DECRBY")
        .arg("n")
        .arg(i64::MIN)
        .query::<i64>(&mut c);
    assert!(overflow.is_err(), "an error, not a panic");
    let _: () = redis::cmd("SET")
        .arg("far")
        .arg(1)
        .arg("PX")
        .arg(i64::MAX)
        .query(&mut c)
        .expect("set");
    let ttl: i64 = redis::cmd("TTL").arg("far").query(&mut c).expect("ttl");
    assert!(ttl > 0);
    let _: () = redis::cmd("HSET")
        .arg("h")
        .arg("f")
        .arg("v")
        .query(&mut c)
        .expect("hset");
    let (_, strings): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("TYPE")
        .arg("string")
        .arg("COUNT")
        .arg(100)
        .query(&mut c)
        .expect("scan");
    assert_eq!(strings.len(), 2, "{strings:?}");
    let (_, hashes): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("TYPE")
        .arg("hash")
        .arg("COUNT")
        .arg(100)
        .query(&mut c)
        .expect("scan");
    assert_eq!(hashes, ["h"]);
    let arity = redis::cmd("SUBSCRIBE").query::<redis::Value>(&mut c);
    assert!(arity.is_err(), "SUBSCRIBE without a channel is refused");
    let pong: String = redis::cmd("PING").query(&mut c).expect("still connected");
    assert_eq!(pong, "PONG");
    let bye: String = redis::cmd("QUIT").query(&mut c).expect("quit");
    assert_eq!(bye, "OK");
}

#[test]
fn a_huge_pause_is_refused_nothing_and_unpause_ends_it() {
    let redis = MemoryRedis::start().expect("start");
    let mut c = connect(&redis);
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(u64::MAX / 2)
        .arg("WRITE")
        .query(&mut c)
        .expect("pause");
    let _: () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query(&mut c)
        .expect("unpause");
    let started = Instant::now();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut c)
        .expect("set");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_shorter_pause_does_not_end_a_longer_one() {
    let redis = MemoryRedis::start().expect("start");
    redis.pause(Duration::from_millis(400));
    redis.pause(Duration::from_millis(50));
    let started = Instant::now();
    let mut c = connect(&redis);
    let _: String = redis::cmd("PING").query(&mut c).expect("ping");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_subscriber_gets_only_what_is_published_after_it_subscribed() {
    let redis = MemoryRedis::start().expect("start");
    let mut publisher = connect(&redis);
    let mut subscribing = connect(&redis);
    let mut subscriber = subscribing.as_pubsub();
    subscriber.subscribe("a").expect("subscribe a");
    let _: u64 = redis::cmd("PUBLISH")
        .arg("b")
        .arg("early")
        .query(&mut publisher)
        .expect("publish");
    subscriber.subscribe("b").expect("subscribe b");
    let _: u64 = redis::cmd("PUBLISH")
        .arg("b")
        .arg("late")
        .query(&mut publisher)
        .expect("publish");
    subscriber
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let message = subscriber.get_message().expect("a message");
    assert_eq!(message.get_payload::<String>().expect("payload"), "late");
}

#[test]
fn an_unknown_script_digest_is_noscript_until_loaded() {
    let redis = MemoryRedis::start().expect("start");
    let mut c = connect(&redis);
    let script = &crate::cache::lease::RELEASE;
    let before = redis::cmd("EVALSHA")
        .arg(script.digest())
        .arg(1)
        .arg("lease")
        .arg("token")
        .query::<i64>(&mut c);
    assert!(before.is_err_and(|e| e.code() == Some("NOSCRIPT")));
    let source = script.source();
    let digest: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(source)
        .query(&mut c)
        .expect("load");
    assert_eq!(digest, script.digest());
    let released: i64 = redis::cmd("EVALSHA")
        .arg(&digest)
        .arg(1)
        .arg("lease")
        .arg("token")
        .query(&mut c)
        .expect("evalsha");
    assert_eq!(released, 0, "no lease held");
}
