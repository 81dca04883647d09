//! A bounded queue between two pipeline stages, budgeted in bytes.
//!
//! After Vector's `limited_queue`: a crossbeam `ArrayQueue` bounds the item
//! count, and a byte counter bounds memory. An item larger than the whole
//! budget is charged the full budget, so an empty queue always accepts one
//! item and the pipeline cannot deadlock. Stages are OS threads, so a full
//! queue blocks on a condition variable. Closing the queue tells the
//! consumer that the producer is gone.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use prometheus::{IntCounter, IntGauge};

/// Anything that can be charged against a byte budget.
pub trait Weighted {
    fn weight(&self) -> usize;
}

pub struct ByteQueue<T> {
    items: ArrayQueue<(T, usize)>,
    bytes: AtomicUsize,
    budget: usize,
    closed: AtomicBool,
    lock: Mutex<()>,
    changed: Condvar,
    gauge: IntGauge,
    blocked_us: IntCounter,
}

#[derive(Debug, PartialEq, Eq)]
pub enum PopError {
    Timeout,
    /// Closed and drained: the producer is gone.
    Closed,
}

impl<T: Weighted> ByteQueue<T> {
    /// `gauge` tracks the bytes held; `blocked_us` the producer's wait time.
    pub fn new(capacity: usize, budget: usize, gauge: IntGauge, blocked_us: IntCounter) -> Self {
        ByteQueue {
            items: ArrayQueue::new(capacity.max(1)),
            bytes: AtomicUsize::new(0),
            budget: budget.max(1),
            closed: AtomicBool::new(false),
            lock: Mutex::new(()),
            changed: Condvar::new(),
            gauge,
            blocked_us,
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Tries once; gives the item back when the queue is full or closed.
    pub fn try_push(&self, item: T) -> Result<(), T> {
        if self.is_closed() {
            return Err(item);
        }
        let charge = item.weight().min(self.budget);
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let used = self.bytes.load(Ordering::Acquire);
        if used > 0 && used + charge > self.budget {
            return Err(item);
        }
        self.items.push((item, charge)).map_err(|(item, _)| item)?;
        self.bytes.fetch_add(charge, Ordering::AcqRel);
        self.gauge.add(charge as i64);
        self.changed.notify_all();
        Ok(())
    }

    /// Blocks until the item fits. Gives it back only if the queue is closed.
    pub fn push(&self, mut item: T) -> Result<(), T> {
        let started = Instant::now();
        let mut waited = false;
        loop {
            match self.try_push(item) {
                Ok(()) => break,
                Err(back) if self.is_closed() => return Err(back),
                Err(back) => {
                    item = back;
                    waited = true;
                    let g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
                    let _ = self.changed.wait_timeout(g, Duration::from_millis(50));
                }
            }
        }
        if waited {
            self.blocked_us.inc_by(started.elapsed().as_micros() as u64);
        }
        Ok(())
    }

    /// Waits up to `timeout` for an item.
    pub fn pop(&self, timeout: Duration) -> Result<T, PopError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((item, charge)) = self.items.pop() {
                self.bytes.fetch_sub(charge, Ordering::AcqRel);
                self.gauge.sub(charge as i64);
                let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
                self.changed.notify_all();
                return Ok(item);
            }
            if self.is_closed() {
                return Err(PopError::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(PopError::Timeout);
            }
            let g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            if self.items.is_empty() && !self.is_closed() {
                let _ = self
                    .changed
                    .wait_timeout(g, (deadline - now).min(Duration::from_millis(50)));
            }
        }
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Debug)]
    struct W(usize);
    impl Weighted for W {
        fn weight(&self) -> usize {
            self.0
        }
    }

    fn q(budget: usize) -> ByteQueue<W> {
        ByteQueue::new(
            16,
            budget,
            IntGauge::new("g", "g").unwrap(),
            IntCounter::new("c", "c").unwrap(),
        )
    }

    #[test]
    fn budget_is_in_bytes() {
        let q = q(100);
        assert!(q.try_push(W(60)).is_ok());
        assert!(q.try_push(W(60)).is_err());
        assert!(q.try_push(W(40)).is_ok());
        assert_eq!(q.bytes(), 100);
    }

    #[test]
    fn an_oversized_item_enters_an_empty_queue() {
        let q = q(100);
        assert!(q.try_push(W(1000)).is_ok());
        assert_eq!(q.bytes(), 100);
        assert!(q.try_push(W(1)).is_err());
        q.pop(Duration::ZERO).unwrap();
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn close_drains_then_reports_closed() {
        let q = Arc::new(q(100));
        q.push(W(1)).unwrap();
        q.close();
        assert!(q.push(W(1)).is_err());
        assert!(q.pop(Duration::ZERO).is_ok());
        assert_eq!(q.pop(Duration::ZERO).err(), Some(PopError::Closed));
    }

    #[test]
    fn a_blocked_producer_resumes_when_space_frees() {
        let q = Arc::new(q(10));
        q.push(W(10)).unwrap();
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.push(W(10)).is_ok());
        std::thread::sleep(Duration::from_millis(20));
        q.pop(Duration::from_secs(1)).unwrap();
        assert!(t.join().unwrap());
        assert_eq!(q.bytes(), 10);
    }
}
