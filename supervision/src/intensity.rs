//! Restart intensity: at most `max_restarts` restarts within a sliding window, as in OTP's
//! supervisor (default: 1 restart in 5 seconds).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The limit: `max_restarts` within `within`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intensity {
    /// Restarts allowed in the window; one more makes the supervisor give up.
    pub max_restarts: usize,
    /// The window.
    #[serde(with = "crate::config::millis")]
    pub within: Duration,
}

impl Default for Intensity {
    fn default() -> Self {
        Intensity {
            max_restarts: 1,
            within: Duration::from_secs(5),
        }
    }
}

/// The sliding window of recent restarts.
#[derive(Debug, Default)]
pub(crate) struct RestartWindow {
    at: VecDeque<Instant>,
}

impl RestartWindow {
    /// Records a restart at `now`; false when that exceeds the intensity.
    pub(crate) fn allow(&mut self, limit: Intensity, now: Instant) -> bool {
        while let Some(first) = self.at.front() {
            if now.saturating_duration_since(*first) >= limit.within {
                self.at.pop_front();
            } else {
                break;
            }
        }
        self.at.push_back(now);
        self.at.len() <= limit.max_restarts
    }

    pub(crate) fn len(&self) -> usize {
        self.at.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otp_default_allows_one_restart_in_five_seconds() {
        let t0 = Instant::now();
        let mut w = RestartWindow::default();
        let lim = Intensity::default();
        assert!(w.allow(lim, t0));
        assert!(!w.allow(lim, t0 + Duration::from_secs(4)));
        let mut w = RestartWindow::default();
        assert!(w.allow(lim, t0));
        assert!(
            w.allow(lim, t0 + Duration::from_secs(5)),
            "the first restart left the window"
        );
    }

    #[test]
    fn window_slides() {
        let t0 = Instant::now();
        let lim = Intensity {
            max_restarts: 3,
            within: Duration::from_secs(10),
        };
        let mut w = RestartWindow::default();
        for s in [0, 1, 2] {
            assert!(w.allow(lim, t0 + Duration::from_secs(s)));
        }
        assert!(!w.allow(lim, t0 + Duration::from_secs(3)));
        let mut w = RestartWindow::default();
        for s in [0, 4, 8, 12, 16, 20] {
            assert!(w.allow(lim, t0 + Duration::from_secs(s)), "at {s}s");
        }
    }
}
