//! TTL classes, literal durations and the jitter applied to every write.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Default TTL of the `short` class: stock, search results, listings.
pub const DEFAULT_TTL_SHORT: Duration = Duration::from_secs(60);
/// Default TTL of the `medium` class: entity details.
pub const DEFAULT_TTL_MEDIUM: Duration = Duration::from_secs(15 * 60);
/// Default TTL of the `long` class: reference data.
pub const DEFAULT_TTL_LONG: Duration = Duration::from_secs(24 * 60 * 60);
/// Default jitter: every TTL written is spread uniformly over ±10 %.
pub const DEFAULT_JITTER_PERCENT: u8 = 10;
/// The largest jitter accepted; beyond it TTLs stop meaning much.
pub const MAX_JITTER_PERCENT: u8 = 50;

/// How long a value stays fresh: a class resolved through [`TtlClasses`], or a fixed duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ttl {
    /// The configured `short` class (default 60 s).
    Short,
    /// The configured `medium` class (default 15 min).
    Medium,
    /// The configured `long` class (default 24 h).
    Long,
    /// A literal duration.
    Fixed(Duration),
}

pub use cache_schema::DurationParseError;
use cache_schema::TtlSpec;

/// Parses a literal duration: an integer followed by `ms`, `s`, `m`, `h` or `d`.
///
/// ```
/// # use std::time::Duration;
/// assert_eq!(cache_runtime::parse_duration("90s"), Ok(Duration::from_secs(90)));
/// assert!(cache_runtime::parse_duration("90").is_err());
/// ```
pub fn parse_duration(input: &str) -> Result<Duration, DurationParseError> {
    cache_schema::parse_millis(input).map(Duration::from_millis)
}

impl FromStr for Ttl {
    type Err = DurationParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match cache_schema::parse_ttl(s)? {
            TtlSpec::Short => Self::Short,
            TtlSpec::Medium => Self::Medium,
            TtlSpec::Long => Self::Long,
            TtlSpec::Millis(ms) => Self::Fixed(Duration::from_millis(ms)),
        })
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Short => f.write_str("short"),
            Self::Medium => f.write_str("medium"),
            Self::Long => f.write_str("long"),
            Self::Fixed(d) => write!(f, "{}ms", d.as_millis()),
        }
    }
}

/// The durations behind the three TTL classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlClasses {
    /// `short`.
    pub short: Duration,
    /// `medium`.
    pub medium: Duration,
    /// `long`.
    pub long: Duration,
}

impl Default for TtlClasses {
    fn default() -> Self {
        Self {
            short: DEFAULT_TTL_SHORT,
            medium: DEFAULT_TTL_MEDIUM,
            long: DEFAULT_TTL_LONG,
        }
    }
}

impl TtlClasses {
    /// The duration `ttl` stands for.
    pub fn resolve(&self, ttl: Ttl) -> Duration {
        match ttl {
            Ttl::Short => self.short,
            Ttl::Medium => self.medium,
            Ttl::Long => self.long,
            Ttl::Fixed(d) => d,
        }
    }
}

/// Uniform jitter of ±`percent` around a TTL, so keys written together expire apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jitter {
    percent: u8,
}

impl Jitter {
    /// Jitter of ±`percent` (clamped to [`MAX_JITTER_PERCENT`]).
    pub fn new(percent: u8) -> Self {
        Self {
            percent: percent.min(MAX_JITTER_PERCENT),
        }
    }

    /// The configured spread in percent.
    pub fn percent(&self) -> u8 {
        self.percent
    }

    /// `base` moved by `unit` across the jitter band: `unit` 0.0 gives the lower bound, 1.0 the
    /// upper. Never less than one millisecond, since Redis rejects a zero expiry.
    pub fn apply_with(&self, base: Duration, unit: f64) -> Duration {
        let spread = f64::from(self.percent) / 100.0;
        let factor = 1.0 - spread + 2.0 * spread * unit.clamp(0.0, 1.0);
        base.mul_f64(factor).max(Duration::from_millis(1))
    }

    /// `base` with a random offset inside the band.
    pub fn apply(&self, base: Duration) -> Duration {
        if self.percent == 0 {
            return base.max(Duration::from_millis(1));
        }
        self.apply_with(base, rand::random::<f64>())
    }
}

impl Default for Jitter {
    fn default() -> Self {
        Self::new(DEFAULT_JITTER_PERCENT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_literals_parse() {
        assert_eq!("short".parse(), Ok(Ttl::Short));
        assert_eq!("medium".parse(), Ok(Ttl::Medium));
        assert_eq!("long".parse(), Ok(Ttl::Long));
        assert_eq!("250ms".parse(), Ok(Ttl::Fixed(Duration::from_millis(250))));
        assert_eq!("15m".parse(), Ok(Ttl::Fixed(Duration::from_secs(900))));
        assert_eq!("2h".parse(), Ok(Ttl::Fixed(Duration::from_secs(7200))));
        assert_eq!("1d".parse(), Ok(Ttl::Fixed(Duration::from_secs(86_400))));
    }

    #[test]
    fn bad_durations_say_what_is_wrong_and_what_to_write() {
        let err = "90".parse::<Ttl>().expect_err("no unit");
        assert!(
            err.to_string()
                .starts_with("invalid duration `90`: the unit is missing")
        );
        assert!(err.to_string().contains("`90s`"));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn jitter_bounds_are_exact_at_the_band_edges() {
        let jitter = Jitter::new(10);
        let base = Duration::from_secs(100);
        assert_eq!(jitter.apply_with(base, 0.0), Duration::from_secs(90));
        assert_eq!(jitter.apply_with(base, 0.5), Duration::from_secs(100));
        assert_eq!(jitter.apply_with(base, 1.0), Duration::from_secs(110));
        assert_eq!(
            Jitter::new(0).apply_with(base, 0.9),
            Duration::from_secs(100)
        );
    }

    #[test]
    fn random_jitter_stays_inside_the_band_and_varies() {
        let jitter = Jitter::new(10);
        let base = Duration::from_secs(60);
        let samples: Vec<Duration> = (0..2_000).map(|_| jitter.apply(base)).collect();
        let (min, max) = (samples.iter().min(), samples.iter().max());
        assert!(min >= Some(&Duration::from_secs(54)), "{min:?}");
        assert!(max <= Some(&Duration::from_secs(66)), "{max:?}");
        // A spread of at least half the band shows the jitter is not constant.
        let spread = max.copied().unwrap_or_default() - min.copied().unwrap_or_default();
        assert!(spread > Duration::from_secs(6), "{spread:?}");
    }

    #[test]
    fn jitter_never_yields_a_zero_expiry() {
        assert_eq!(
            Jitter::new(50).apply_with(Duration::from_millis(1), 0.0),
            Duration::from_millis(1)
        );
    }
}
