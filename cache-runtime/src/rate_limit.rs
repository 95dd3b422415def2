//! Rate limiting with GCRA (the generic cell rate algorithm): `limit` calls per `period` per
//! subject, with bursts up to `limit`, decided in one round trip by a Lua script that declares
//! its one key and reads Redis' clock (so instances with skewed clocks agree).
//!
//! Each subject costs one key, `{app}:ratelimit:{name}:{subject}`, holding its theoretical
//! arrival time and expiring when the subject is back to a full allowance. When Redis cannot be
//! asked, the limiter's policy decides: fail open (allow) or fail closed (deny).

#[cfg(feature = "tower")]
mod layer;
#[cfg(feature = "tower")]
pub use layer::{RateLimit, RateLimitLayer};

use std::time::Duration;

use crate::cache::Cache;
use crate::error::CacheError;
use crate::key::{NameError, escape_into, validate_name};
use crate::script::Script;

/// GCRA in microseconds of Redis' clock. ARGV: emission interval `T` = period / limit, and the
/// burst window `period - T`. Returns `{allowed (0/1), remaining, retry_after_us, reset_us}`.
pub(crate) static GCRA: Script = Script::new(
    r"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - window
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
-- The calls that would pass now after this one: each moves the arrival time on by `interval`.
local remaining = math.floor((now + window - new_tat) / interval) + 1
if remaining < 0 then remaining = 0 end
return {1, remaining, 0, new_tat - now}
",
);

/// What a limiter does when Redis cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenUnavailable {
    /// Allow the call (an outage of Redis does not become an outage of the service).
    Allow,
    /// Deny the call (for limits that protect something that must not be overrun).
    Deny,
}

/// The answer for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the call may proceed.
    pub allowed: bool,
    /// Calls still allowed right now after this one.
    pub remaining: u32,
    /// When denied, how long until one call is allowed again (zero when allowed).
    pub retry_after: Duration,
    /// How long until the subject is back to its full allowance.
    pub reset_after: Duration,
    /// `false` when Redis could not be asked and the [`WhenUnavailable`] policy answered.
    pub decided_by_redis: bool,
}

/// `limit` calls per `period` for each subject (a user id, an IP address, an API key).
#[derive(Debug, Clone)]
pub struct RateLimiter {
    cache: Cache,
    prefix: String,
    limit: u32,
    interval_us: u64,
    window_us: u64,
    when_unavailable: WhenUnavailable,
}

impl RateLimiter {
    /// A limiter named `name` (`[a-z0-9_-]`) allowing `limit` calls per `period` to each
    /// subject (at least 1 call, at least 1 ms), failing open.
    pub fn new(cache: &Cache, name: &str, limit: u32, period: Duration) -> Result<Self, NameError> {
        validate_name("rate limiter", name)?;
        let limit = limit.max(1);
        let period_us = u64::try_from(period.as_micros())
            .unwrap_or(u64::MAX)
            .max(1_000);
        let interval_us = (period_us / u64::from(limit)).max(1);
        Ok(Self {
            prefix: format!("{}:ratelimit:{name}:", cache.config().app_prefix()),
            cache: cache.clone(),
            limit,
            interval_us,
            window_us: period_us.saturating_sub(interval_us),
            when_unavailable: WhenUnavailable::Allow,
        })
    }

    /// What to answer when Redis cannot be asked (default: allow).
    #[must_use]
    pub fn when_unavailable(mut self, policy: WhenUnavailable) -> Self {
        self.when_unavailable = policy;
        self
    }

    /// Counts one call of `subject` and says whether it may proceed.
    pub async fn check(&self, subject: &str) -> Decision {
        match self.ask(subject).await {
            Ok(decision) => decision,
            Err(error) => {
                tracing::debug!(%error, subject, "rate limiter cannot reach Redis: its policy answers");
                Decision {
                    allowed: self.when_unavailable == WhenUnavailable::Allow,
                    remaining: 0,
                    retry_after: Duration::ZERO,
                    reset_after: Duration::ZERO,
                    decided_by_redis: false,
                }
            }
        }
    }

    async fn ask(&self, subject: &str) -> Result<Decision, CacheError> {
        let mut key = self.prefix.clone();
        escape_into(&mut key, subject);
        let (allowed, remaining, retry_us, reset_us): (u8, u64, u64, u64) = self
            .cache
            .call(
                self.cache
                    .scripts()
                    .cmd(&GCRA)
                    .arg(1)
                    .arg(key)
                    .arg(self.interval_us)
                    .arg(self.window_us)
                    .into(),
            )
            .await?;
        Ok(Decision {
            allowed: allowed == 1,
            remaining: u32::try_from(remaining)
                .unwrap_or(self.limit)
                .min(self.limit),
            retry_after: Duration::from_micros(retry_us),
            reset_after: Duration::from_micros(reset_us),
            decided_by_redis: true,
        })
    }
}
