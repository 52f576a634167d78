//! One exponential backoff for every "retry until it works" loop: a store
//! or broker that is away, a result that could not be written yet.

use crate::timeouts::{RETRY_FIRST, RETRY_MAX};
use std::time::Duration;

/// Doubles from `first` up to `max`; [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The one every retry loop uses: [`RETRY_FIRST`], doubling, at most
    /// [`RETRY_MAX`].
    pub fn standard() -> Backoff {
        Backoff::new(RETRY_FIRST, RETRY_MAX)
    }

    /// The delay to wait now; the one after is twice as long (up to max).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Wait [`Backoff::next_delay`].
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let seen: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(seen, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
