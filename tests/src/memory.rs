//! [`MemoryServer`]: the in-memory Redis of `cache_runtime::testing` behind the same methods
//! as [`crate::RedisServer`], so one test module runs on both.

use std::time::Duration;

use cache_runtime::testing::MemoryRedis;

use crate::{inspection, is_bookkeeping};

#[derive(Debug)]
pub struct MemoryServer {
    redis: MemoryRedis,
}

impl MemoryServer {
    pub fn start() -> Self {
        Self {
            redis: MemoryRedis::start().expect("an in-memory Redis on a loopback port"),
        }
    }

    /// The in-memory Redis itself (its clock, `sweep_expired`).
    pub fn redis(&self) -> &MemoryRedis {
        &self.redis
    }

    pub fn port(&self) -> u16 {
        self.redis.port()
    }

    pub fn url(&self) -> String {
        self.redis.url()
    }

    inspection!();

    /// Closes every connection and stops listening.
    pub fn stop(&mut self) {
        self.redis.stop();
    }

    /// Listens again on the same port, empty, under a new `run_id`.
    pub fn restart(&mut self) {
        self.redis.restart().expect("the same port again");
    }

    pub fn freeze(&self) {
        self.redis.freeze();
    }

    pub fn thaw(&self) {
        self.redis.thaw();
    }

    /// Answers nothing for `duration`.
    pub fn pause(&self, duration: Duration) {
        self.redis.pause(duration);
    }
}
