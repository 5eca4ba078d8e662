//! How long a crashed service waits before it is started again: doubling from `initial` up to
//! `max`, back to `initial` once a run lasted `reset_after`. Pure arithmetic on durations the
//! caller measured, so the schedule is tested without waiting.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
    /// A run at least this long counts as healthy: the next crash waits `initial` again.
    pub reset_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            reset_after: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    next: Duration,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            next: policy.initial,
        }
    }

    /// The delay before the next start, given how long the run that just ended lasted.
    pub fn after_run(&mut self, ran: Duration) -> Duration {
        if ran >= self.policy.reset_after {
            self.next = self.policy.initial;
        }
        let delay = self.next.min(self.policy.max);
        self.next = delay.saturating_mul(2).min(self.policy.max);
        delay
    }
}

/// `750ms`, `2s`, `1.5s`: how delays read in the log.
pub fn show(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn doubles_up_to_the_cap() {
        let mut b = Backoff::new(BackoffPolicy {
            initial: MS(100),
            max: MS(1000),
            reset_after: MS(10_000),
        });
        let delays: Vec<u128> = (0..7).map(|_| b.after_run(MS(5)).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000, 1000]);
    }

    #[test]
    fn a_long_run_resets_the_delay() {
        let mut b = Backoff::new(BackoffPolicy {
            initial: MS(100),
            max: MS(1000),
            reset_after: MS(10_000),
        });
        b.after_run(MS(5));
        b.after_run(MS(5));
        assert_eq!(b.after_run(MS(5)), MS(400));
        assert_eq!(b.after_run(MS(10_000)), MS(100));
        assert_eq!(b.after_run(MS(9_999)), MS(200));
    }

    #[test]
    fn default_policy_and_display() {
        let mut b = Backoff::new(BackoffPolicy::default());
        assert_eq!(show(b.after_run(Duration::ZERO)), "1s");
        assert_eq!(show(b.after_run(Duration::ZERO)), "2s");
        assert_eq!(show(MS(250)), "250ms");
        assert_eq!(show(MS(1500)), "1.5s");
    }
}
