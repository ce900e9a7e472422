//! Exponential backoff for loops that wait for a dependency to come back.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::infra::config::RetrySettings;

/// Sleeps for `delay`, or less if `shutdown` is cancelled first.
pub async fn sleep_or_cancel(delay: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(delay) => {}
    }
}

/// Runs `attempt` until it succeeds, waiting `backoff` between failures (each logged with
/// `what`): None if `shutdown` comes first. For a background task's set-up that needs NATS,
/// which may be down when the service starts.
pub async fn until_ready<T, E, F, Fut>(
    what: &str,
    mut backoff: Backoff,
    shutdown: &CancellationToken,
    mut attempt: F,
) -> Option<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    loop {
        match attempt().await {
            Ok(ready) => return Some(ready),
            Err(error) => {
                tracing::warn!(%error, "cannot {what}; retrying");
                sleep_or_cancel(backoff.next_delay(), shutdown).await;
                if shutdown.is_cancelled() {
                    return None;
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            current: initial,
        }
    }

    pub fn from_millis(initial: u64, max: u64) -> Self {
        Self::new(Duration::from_millis(initial), Duration::from_millis(max))
    }

    pub fn from_settings(settings: RetrySettings) -> Self {
        Self::new(settings.initial, settings.max)
    }

    /// The delay to wait now; the next one is twice as long, up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.current;
        self.current = (self.current * 2).min(self.max);
        delay
    }

    pub fn reset(&mut self) {
        self.current = self.initial;
    }

    /// The delay before the `attempt`-th retry (1-based), without keeping state: used for
    /// redeliveries, where JetStream counts the attempts for us.
    pub(crate) fn delay_for_attempt(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.initial.saturating_mul(factor).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_maximum_and_resets() {
        let mut backoff = Backoff::from_millis(100, 350);
        let delays: Vec<_> = (0..4).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        backoff.reset();
        assert_eq!(backoff.next_delay().as_millis(), 100);
    }

    #[test]
    fn delay_for_attempt_grows_and_is_capped() {
        let backoff = Backoff::from_millis(500, 30_000);
        assert_eq!(backoff.delay_for_attempt(1).as_millis(), 500);
        assert_eq!(backoff.delay_for_attempt(3).as_millis(), 2_000);
        assert_eq!(backoff.delay_for_attempt(1_000).as_millis(), 30_000);
    }
}
