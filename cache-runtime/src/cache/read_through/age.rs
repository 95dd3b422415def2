//! How old a value is, and an old value kept to serve instead of waiting or failing.

use crate::cache::Cache;
use crate::envelope::Header;
use crate::freshness::{ReadOptions, refresh_early};
use crate::metrics::{Counters, bump};

/// What a read makes of a value's age.
pub(crate) enum Age {
    /// Fresh: serve it.
    Fresh,
    /// Fresh, but this read drew an early refresh.
    RefreshEarly,
    /// Past its TTL, inside the stale grace: serve it while one caller refreshes.
    Stale,
}

/// A value to serve instead of waiting for or failing on the loader.
pub(super) struct Fallback<L> {
    value: L,
    stale: bool,
}

impl<L> Fallback<L> {
    pub(super) fn new(value: L, age: Age, counters: &Counters) -> Self {
        if matches!(age, Age::RefreshEarly) {
            bump(&counters.early_refreshes);
        }
        Self {
            value,
            stale: matches!(age, Age::Stale),
        }
    }

    /// The old value, counted as a fail-safe answer or a stale one.
    pub(super) fn serve(self, counters: &Counters, fail_safe: bool) -> L {
        if fail_safe {
            bump(&counters.fail_safe);
        } else if self.stale {
            bump(&counters.stale_served);
        }
        self.value
    }
}

impl Cache {
    pub(crate) fn age(&self, header: &Header, options: &ReadOptions) -> Age {
        if options.stale.is_none() && options.early_refresh.is_none() {
            // Redis' TTL is the expiry: whatever it still holds is fresh. No clock read on
            // the plain hit path.
            return Age::Fresh;
        }
        let now = self.now_ms();
        if now < header.fresh_until_ms {
            match options.early_refresh {
                Some(beta) if refresh_early(header, now, beta, rand::random::<f64>()) => {
                    Age::RefreshEarly
                }
                _ => Age::Fresh,
            }
        } else if options.stale.is_some() {
            Age::Stale
        } else {
            // Without a grace period the physical TTL is the logical one: a value Redis still
            // holds is fresh, whatever the clocks of the writer and this reader say.
            Age::Fresh
        }
    }
}
