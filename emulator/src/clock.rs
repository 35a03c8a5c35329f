//! The emulator's clock. Every time-dependent behaviour (token `iat`/`nbf`/`exp`, assertion
//! validity, secret expiry, key-rotation overlap) reads this clock, so tests and users can move
//! time with `/_emulator/clock` instead of sleeping.

use std::sync::{Arc, Mutex, MutexGuard};

use time::{Duration, OffsetDateTime};

/// A clock that follows system time, shifted by an offset, or frozen at an instant.
///
/// ```
/// use m365_emulator::clock::Clock;
/// let clock = Clock::system();
/// clock.freeze();
/// let t0 = clock.now();
/// clock.advance(time::Duration::hours(1));
/// assert_eq!(clock.now() - t0, time::Duration::hours(1));
/// ```
/// The latest instant the clock reaches: far enough for any test, early enough that adding a
/// token lifetime or a retention period can never overflow.
pub const LATEST: OffsetDateTime = time::macros::datetime!(9000-01-01 00:00 UTC);
/// The earliest instant the clock can be set to.
pub const EARLIEST: OffsetDateTime = time::macros::datetime!(1970-01-01 00:00 UTC);

fn clamp(t: OffsetDateTime) -> OffsetDateTime {
    t.clamp(EARLIEST, LATEST)
}

#[derive(Clone, Debug, Default)]
pub struct Clock {
    inner: Arc<Mutex<ClockState>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct ClockState {
    offset: Duration,
    frozen_at: Option<OffsetDateTime>,
}

impl Clock {
    /// A clock that starts at system time.
    pub fn system() -> Clock {
        Clock::default()
    }

    fn state(&self) -> MutexGuard<'_, ClockState> {
        // The state is two plain values; a poisoned lock cannot leave it half-written.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current emulated time.
    pub fn now(&self) -> OffsetDateTime {
        let s = *self.state();
        s.frozen_at.unwrap_or_else(|| {
            clamp(
                OffsetDateTime::now_utc()
                    .checked_add(s.offset)
                    .unwrap_or(LATEST),
            )
        })
    }

    /// Seconds since the Unix epoch, as used in JWT NumericDate claims.
    pub fn unix(&self) -> i64 {
        self.now().unix_timestamp()
    }

    pub fn is_frozen(&self) -> bool {
        self.state().frozen_at.is_some()
    }

    /// Moves time forward (or backward with a negative duration).
    pub fn advance(&self, by: Duration) {
        let mut s = self.state();
        match s.frozen_at.as_mut() {
            Some(t) => {
                let bound = if by.is_negative() { EARLIEST } else { LATEST };
                *t = clamp(t.checked_add(by).unwrap_or(bound))
            }
            None => s.offset = s.offset.saturating_add(by),
        }
    }

    /// Jumps to an instant; a frozen clock stays frozen there.
    pub fn set(&self, to: OffsetDateTime) {
        let mut s = self.state();
        let to = clamp(to);
        match s.frozen_at.as_mut() {
            Some(t) => *t = to,
            None => s.offset = to - OffsetDateTime::now_utc(),
        }
    }

    /// Stops time at the current instant.
    pub fn freeze(&self) {
        let now = self.now();
        self.state().frozen_at = Some(now);
    }

    /// Lets time run again from the instant it was frozen at.
    pub fn resume(&self) {
        let mut s = self.state();
        if let Some(t) = s.frozen_at.take() {
            s.offset = t - OffsetDateTime::now_utc();
        }
    }

    /// Back to system time, running.
    pub fn reset(&self) {
        *self.state() = ClockState::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extreme_times_are_clamped_not_overflowed() {
        let c = Clock::system();
        c.set(time::macros::datetime!(9999-12-31 23:59:58 UTC));
        assert_eq!(c.now().year(), 9000);
        c.advance(Duration::MAX);
        assert!(c.now() <= LATEST);
        c.freeze();
        c.advance(Duration::MAX);
        assert_eq!(c.now(), LATEST);
        let _ = c.now() + Duration::days(400);
    }

    #[test]
    fn resume_continues_from_the_frozen_instant() {
        let c = Clock::system();
        c.freeze();
        c.set(time::macros::datetime!(2030-01-01 00:00 UTC));
        assert_eq!(c.now(), time::macros::datetime!(2030-01-01 00:00 UTC));
        c.resume();
        let d = c.now() - time::macros::datetime!(2030-01-01 00:00 UTC);
        assert!(d >= Duration::ZERO && d < Duration::seconds(5), "{d}");
        c.reset();
        assert!((c.now() - OffsetDateTime::now_utc()).abs() < Duration::seconds(5));
    }
}
