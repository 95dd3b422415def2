use cache_runtime::{current, install, with_cache};

use crate::cache;
use cache_tests::RedisServer;

// The only test in this binary that installs the global cache: it is process-wide.
#[tokio::test]
async fn install_once_then_scoped_overrides_take_precedence() {
    let server = RedisServer::start();
    let (global, scoped) = (cache(&server), cache(&server));
    global.entity("global_marker").expect("entity");
    scoped.entity("scoped_marker").expect("entity");
    let names = |c: &cache_runtime::Cache| -> Vec<String> {
        c.metrics().into_iter().map(|m| m.entity).collect()
    };

    install(global).expect("first install");
    let second = install(cache(&server)).expect_err("second install is an error");
    assert!(second.to_string().contains("installed already"));

    let in_effect = current().expect("installed");
    assert_eq!(names(&in_effect), vec!["global_marker"]);
    let in_scope = with_cache(scoped, async { current().expect("scoped") }).await;
    assert_eq!(names(&in_scope), vec!["scoped_marker"]);
    assert_eq!(names(&current().expect("installed")), vec!["global_marker"]);
}
