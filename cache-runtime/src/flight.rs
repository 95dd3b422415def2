//! Single flight: concurrent misses on one key in this process share one loader call.
//!
//! The first caller to miss becomes the leader and runs the loader; the others wait for its
//! outcome and decode the leader's encoded value themselves (so values need not be `Clone`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::bus::Event;
use crate::share::SharedError;

/// What a leader hands to the callers waiting on it.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// The loaded value in its stored form (envelope included).
    Value(Arc<[u8]>),
    /// The loader found nothing (`None`).
    Absent,
    /// The loader failed with this error, for waiters that can take a copy of it.
    Error(SharedError),
    /// The loader failed, or its value could not be encoded; each waiter loads for itself.
    Failed,
}

type Slot = watch::Receiver<Option<Outcome>>;

/// The flights in progress, by Redis key.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    in_flight: Mutex<HashMap<String, Slot>>,
}

/// Joining a flight either makes the caller its leader or gives it a flight to wait on.
pub(crate) enum Join<'a> {
    Leader(Leader<'a>),
    Follower(Slot),
}

/// The caller running the loader for a key. Dropping it without [`Leader::finish`] (the
/// caller's future was cancelled) releases the waiters, one of which then takes over.
#[derive(Debug)]
pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    key: String,
    sender: watch::Sender<Option<Outcome>>,
}

impl Flights {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        // The map holds plain channels; a panic elsewhere cannot leave it inconsistent.
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn join(&self, key: &str) -> Join<'_> {
        let mut in_flight = self.lock();
        if let Some(slot) = in_flight.get(key) {
            return Join::Follower(slot.clone());
        }
        let (sender, receiver) = watch::channel(None);
        in_flight.insert(key.to_owned(), receiver);
        Join::Leader(Leader {
            flights: self,
            key: key.to_owned(),
            sender,
        })
    }

    /// Lets no new caller join the flights of keys that `matches` selects: an invalidation is
    /// under way, and a load that started before it may return what it invalidates. The
    /// flights go on for the callers already waiting.
    pub(crate) fn detach(&self, matches: impl Fn(&str) -> bool) {
        self.lock().retain(|key, _| !matches(key));
    }

    /// [`Self::detach`] for one key: a map removal, not a pass over every flight (it runs on
    /// every write).
    pub(crate) fn detach_key(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Detaches the flights an invalidation event covers: another instance's invalidation must
    /// not be answered here by a load that started before it.
    pub(crate) fn detach_covered(&self, event: &Event) {
        match event {
            Event::Key(key) => self.detach_key(key),
            Event::Id(key) => {
                let variants = format!("{key}:");
                self.detach(|k| k == key || k.starts_with(&variants));
            }
            Event::Prefix(prefix) => self.detach(|k| k.starts_with(prefix.as_str())),
            // A raised mark needs no detach: the flight's value then fails the gate its
            // followers pass (the mark is raised first), and they join a new flight. Detaching
            // would also split the flights of a new app at every mark it creates.
            Event::EntityMark(..) | Event::TagMark(..) | Event::Echo => {}
        }
    }

    /// How many keys are being loaded right now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

impl Leader<'_> {
    /// Whether anyone is waiting for this flight's outcome (the map holds one receiver).
    pub(crate) fn has_followers(&self) -> bool {
        self.sender.receiver_count() > 1
    }

    /// Hands `outcome` to every waiter and ends the flight.
    pub(crate) fn finish(self, outcome: Outcome) {
        self.sender.send_replace(Some(outcome));
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.flights.lock();
        if in_flight
            .get(&self.key)
            .is_some_and(|slot| slot.same_channel(&self.sender.subscribe()))
        {
            in_flight.remove(&self.key);
        }
    }
}

/// Waits for the leader: its outcome, or `None` if it went away without one.
pub(crate) async fn wait(mut slot: Slot) -> Option<Outcome> {
    slot.wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|outcome| outcome.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_the_leaders_outcome_and_the_flight_ends() {
        let flights = Flights::default();
        let Join::Leader(leader) = flights.join("k") else {
            panic!("first caller leads");
        };
        let Join::Follower(slot) = flights.join("k") else {
            panic!("second caller follows");
        };
        let waiter = tokio::spawn(wait(slot));
        leader.finish(Outcome::Value(Arc::from(&b"v"[..])));
        let got = waiter.await.expect("task");
        assert!(matches!(got, Some(Outcome::Value(v)) if &*v == b"v"));
        assert_eq!(flights.len(), 0);
        assert!(
            matches!(flights.join("k"), Join::Leader(_)),
            "a new flight starts"
        );
    }

    #[tokio::test]
    async fn a_detached_flight_serves_its_followers_but_no_newcomer() {
        let flights = Flights::default();
        let Join::Leader(old) = flights.join("k") else {
            panic!("first caller leads");
        };
        let Join::Follower(slot) = flights.join("k") else {
            panic!("second caller follows");
        };
        flights.detach_key("k");
        let Join::Leader(new) = flights.join("k") else {
            panic!("a caller after the detach leads a flight of its own");
        };
        old.finish(Outcome::Absent);
        assert!(matches!(wait(slot).await, Some(Outcome::Absent)));
        assert_eq!(
            flights.len(),
            1,
            "the old leader left the new flight in place"
        );
        drop(new);
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn an_incoming_event_detaches_the_flights_it_covers_and_no_other() {
        let flights = Flights::default();
        let keys = [
            "app:v1:product:1",
            "app:v1:product:1:p2",
            "app:v1:product:12",
            "app:v1:list:1",
        ];
        let leaders: Vec<_> = keys.iter().map(|key| flights.join(key)).collect();
        flights.detach_covered(&Event::Id("app:v1:product:1".to_owned()));
        assert_eq!(
            flights.len(),
            2,
            "the id and its variant went, id 12 stayed"
        );
        flights.detach_covered(&Event::EntityMark("app:v1:product:%mark".to_owned(), 9));
        assert_eq!(flights.len(), 2, "marks are left to the gate");
        flights.detach_covered(&Event::Prefix("app:v1:product:".to_owned()));
        assert_eq!(
            flights.len(),
            1,
            "every product flight went, the list stayed"
        );
        drop(leaders);
    }

    #[tokio::test]
    async fn a_vanished_leader_releases_its_followers() {
        let flights = Flights::default();
        let leader = flights.join("k");
        let Join::Follower(slot) = flights.join("k") else {
            panic!("second caller follows");
        };
        drop(leader);
        assert!(wait(slot).await.is_none());
        assert_eq!(flights.len(), 0);
    }
}
