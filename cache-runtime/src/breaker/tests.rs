use super::*;
use crate::clock::MockClock;

const COOLDOWN: Duration = Duration::from_secs(5);

fn breaker(threshold: u32) -> (Breaker, MockClock) {
    let clock = MockClock::new();
    (
        Breaker::new(threshold, COOLDOWN, Arc::new(clock.clone())),
        clock,
    )
}

fn fail(b: &Breaker) {
    let permit = b.permit().expect("permitted");
    b.record(permit, Err(&"connection refused"));
}

#[test]
fn opens_after_threshold_consecutive_failures() {
    let (b, _) = breaker(3);
    fail(&b);
    fail(&b);
    assert_eq!(b.state(), BreakerState::Closed);
    fail(&b);
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.permit(), None);
    assert_eq!(b.transitions(), 1);
}

#[test]
fn a_success_resets_the_failure_count() {
    let (b, _) = breaker(3);
    fail(&b);
    fail(&b);
    let permit = b.permit().expect("closed");
    b.record(permit, Ok(()));
    fail(&b);
    fail(&b);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn command_errors_do_not_trip_it() {
    let (b, _) = breaker(1);
    for _ in 0..10 {
        let permit = b.permit().expect("closed");
        b.record(permit, Ok(()));
    }
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn after_cooldown_exactly_one_probe_goes_through() {
    let (b, clock) = breaker(1);
    fail(&b);
    clock.advance(COOLDOWN - Duration::from_millis(1));
    assert_eq!(b.permit(), None);
    clock.advance(Duration::from_millis(1));
    assert_eq!(b.permit(), Some(Permit::Probe));
    assert_eq!(b.state(), BreakerState::HalfOpen);
    assert_eq!(b.permit(), None, "only one probe while half-open");
}

#[test]
fn a_successful_probe_closes_it() {
    let (b, clock) = breaker(1);
    fail(&b);
    clock.advance(COOLDOWN);
    let probe = b.permit().expect("probe");
    b.record(probe, Ok(()));
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.permit(), Some(Permit::Normal));
    assert_eq!(b.transitions(), 3);
}

#[test]
fn a_failed_probe_reopens_it_for_a_full_cooldown() {
    let (b, clock) = breaker(1);
    fail(&b);
    clock.advance(COOLDOWN);
    let probe = b.permit().expect("probe");
    clock.advance(Duration::from_secs(1));
    b.record(probe, Err(&"connection refused"));
    assert_eq!(b.state(), BreakerState::Open);
    clock.advance(COOLDOWN - Duration::from_millis(1));
    assert_eq!(b.permit(), None);
    clock.advance(Duration::from_millis(1));
    assert_eq!(b.permit(), Some(Permit::Probe));
}

#[test]
fn a_probe_that_never_reports_does_not_wedge_it_half_open() {
    let (b, clock) = breaker(1);
    fail(&b);
    clock.advance(COOLDOWN);
    let _lost_probe = b.permit().expect("probe");
    assert_eq!(b.permit(), None);
    clock.advance(COOLDOWN);
    assert_eq!(b.permit(), Some(Permit::Probe));
}
