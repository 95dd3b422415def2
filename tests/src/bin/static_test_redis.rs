//! The other process of `testing_support`'s `TestRedis` tests: starts a `TestRedis` kept in a
//! `static` (never dropped), prints its pid and exits, or prints why it could not start.

use std::sync::LazyLock;

use cache_runtime::testing::{TestRedis, TestRedisError};

static REDIS: LazyLock<Result<TestRedis, TestRedisError>> = LazyLock::new(TestRedis::start);

fn main() {
    match &*REDIS {
        Ok(redis) => println!("{}", redis.pid().unwrap_or(0)),
        Err(error) => println!("error: {error}"),
    }
}
