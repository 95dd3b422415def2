use std::time::Duration;

use cache_runtime::{Cache, Sessions};
use serde::{Deserialize, Serialize};

use crate::RedisServer;
use crate::cache;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Login {
    user: String,
    roles: Vec<String>,
}

fn login(user: &str) -> Login {
    Login {
        user: user.to_owned(),
        roles: vec!["buyer".to_owned()],
    }
}

/// The `web` store with these idle and maximum lifetimes.
fn web(cache: &Cache, idle: Duration, max_lifetime: Duration) -> Sessions<Login> {
    Sessions::new(cache, "web", idle, max_lifetime).expect("store")
}

#[tokio::test]
async fn a_read_extends_a_session_and_an_idle_one_ends() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let sessions = web(&cache, Duration::from_millis(400), Duration::from_secs(60));
    let kept = sessions.create("ann", &login("ann")).await.expect("create");
    let idle = sessions.create("bob", &login("bob")).await.expect("create");
    assert_ne!(kept, idle);
    // Reads every 200 ms keep it past three idle times; the unread one ends after one.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(sessions.get(&kept).await.expect("get"), Some(login("ann")));
    }
    assert_eq!(
        sessions.get(&idle).await.expect("get"),
        None,
        "idle past 400 ms"
    );
    let ttl: i64 = server.query(redis::cmd("PTTL").arg(format!("test:sessions:web:{kept}")));
    assert!(
        (300..=400).contains(&ttl),
        "the last read set the idle time again: {ttl} ms"
    );
}

#[tokio::test]
async fn no_read_keeps_a_session_past_its_maximum_lifetime() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let sessions = web(
        &cache,
        Duration::from_millis(300),
        Duration::from_millis(700),
    );
    let id = sessions.create("ann", &login("ann")).await.expect("create");
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(sessions.get(&id).await.expect("get").is_some());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        sessions.get(&id).await.expect("get"),
        None,
        "800 ms after it started"
    );
    assert!(
        server.scan("test:sessions:web:[0-9a-f]*").is_empty(),
        "and removed"
    );
}

#[tokio::test]
async fn sessions_are_revoked_one_by_one_or_all_of_a_user() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let sessions = web(&cache, Duration::from_secs(60), Duration::from_secs(3600));
    let phone = sessions.create("ann", &login("ann")).await.expect("create");
    let laptop = sessions.create("ann", &login("ann")).await.expect("create");
    let tablet = sessions.create("ann", &login("ann")).await.expect("create");
    let other = sessions.create("bob", &login("bob")).await.expect("create");

    assert!(sessions.revoke(&tablet).await.expect("revoke"));
    assert!(
        !sessions.revoke(&tablet).await.expect("revoke"),
        "already gone"
    );
    assert_eq!(sessions.get(&tablet).await.expect("get"), None);

    let mut admin = login("ann");
    admin.roles.push("admin".to_owned());
    assert!(sessions.update(&phone, &admin).await.expect("update"));
    assert_eq!(sessions.get(&phone).await.expect("get"), Some(admin));
    assert!(
        !sessions
            .update(&tablet, &login("ann"))
            .await
            .expect("update"),
        "no resurrection"
    );

    assert_eq!(
        sessions.revoke_all("ann").await.expect("revoke all"),
        2,
        "phone and laptop"
    );
    assert_eq!(sessions.get(&phone).await.expect("get"), None);
    assert_eq!(sessions.get(&laptop).await.expect("get"), None);
    assert_eq!(
        sessions.get(&other).await.expect("get"),
        Some(login("bob")),
        "another user's stays"
    );
    assert_eq!(sessions.revoke_all("ann").await.expect("revoke all"), 0);
}

#[tokio::test]
async fn without_redis_a_session_read_is_an_error_not_a_guess() {
    let mut server = RedisServer::start();
    let cache = cache(&server);
    let sessions = web(&cache, Duration::from_secs(60), Duration::from_secs(3600));
    let id = sessions.create("ann", &login("ann")).await.expect("create");
    server.stop();
    assert!(sessions.get(&id).await.is_err());
    assert!(
        Sessions::<Login>::new(
            &cache,
            "Web Sessions",
            Duration::from_secs(1),
            Duration::from_secs(1)
        )
        .is_err()
    );
}
