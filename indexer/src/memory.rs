//! The memory monitor: pauses Kafka fetching when the bytes in flight or
//! the process's resident memory pass a high-water mark, and resumes below
//! a low-water mark. Pausing at the source is what keeps resident memory
//! under the limit however slow the store is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::MemoryConfig;
use crate::metrics::Metrics;

/// Resident set size of this process, from `/proc/self/statm`.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

pub struct Monitor {
    pub cfg: MemoryConfig,
    pub metrics: Arc<Metrics>,
    /// Sums the bytes held by queues, open blocks and uploads.
    pub in_flight: Box<dyn Fn() -> u64 + Send>,
    pub pause: Arc<AtomicBool>,
    pub stop: Arc<AtomicBool>,
}

impl Monitor {
    /// Decides the next pause state from the current readings.
    pub fn decide(cfg: &MemoryConfig, paused: bool, rss: u64, in_flight: u64) -> bool {
        let limit = cfg.limit_bytes as f64;
        let (high, low) = (cfg.high_water * limit, cfg.low_water * limit);
        // Half the limit for data in flight, the rest for everything else.
        let (fl_high, fl_low) = (high / 2.0, low / 2.0);
        let (rss, fl) = (rss as f64, in_flight as f64);
        if paused {
            // Resident memory the allocator keeps after a spike must not
            // hold the pause forever once nothing is in flight.
            !(fl < fl_low && (rss < low || in_flight == 0))
        } else {
            fl >= fl_high || rss >= high
        }
    }

    pub fn run(self) {
        let mut paused = false;
        while !self.stop.load(Ordering::Relaxed) {
            let rss = resident_bytes().unwrap_or(0);
            let fl = (self.in_flight)();
            self.metrics.resident_bytes.set(rss as i64);
            let next = Self::decide(&self.cfg, paused, rss, fl);
            if next != paused {
                tracing::info!(paused = next, rss, in_flight = fl, "backpressure");
                paused = next;
                self.pause.store(paused, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hysteresis() {
        let cfg = MemoryConfig {
            limit_bytes: 1000,
            ..Default::default()
        };
        assert!(!Monitor::decide(&cfg, false, 100, 100));
        assert!(Monitor::decide(&cfg, false, 800, 0));
        assert!(Monitor::decide(&cfg, false, 100, 400));
        // Between the marks the state holds.
        assert!(Monitor::decide(&cfg, true, 600, 300));
        assert!(!Monitor::decide(&cfg, true, 100, 100));
        // Nothing in flight: resume even if the allocator kept the memory.
        assert!(!Monitor::decide(&cfg, true, 900, 0));
    }
}
