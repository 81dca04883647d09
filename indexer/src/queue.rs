//! A bounded queue between two pipeline stages, budgeted in bytes.
//!
//! After Vector's `limited_queue`: a crossbeam `ArrayQueue` bounds the item
//! count, and a byte counter bounds memory. An item larger than the whole
//! budget is charged the full budget, so an empty queue always accepts one
//! item and the pipeline cannot deadlock. Stages are OS threads, so a full
//! queue blocks on a condition variable.
//!
//! Each end is a handle, as in Vector: dropping the last [`Sender`] closes
//! the queue for the [`Receiver`], which drains what is left and then sees
//! [`PopError::Closed`]; dropping the `Receiver` closes it for the senders,
//! whose pushes fail at once. A stage owns its handles, so a stage that
//! returns or panics closes both its queues as its thread unwinds, and
//! its neighbours stop instead of blocking for ever: a dead stage stops
//! the whole pipeline.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use prometheus::{Counter, IntGauge};

/// Anything that can be charged against a byte budget.
pub trait Weighted {
    fn weight(&self) -> usize;
}

struct Shared<T> {
    items: ArrayQueue<(T, usize)>,
    bytes: AtomicUsize,
    budget: usize,
    /// Live [`Sender`]s; at zero, the receiver drains and sees `Closed`.
    senders: AtomicUsize,
    /// Set by [`Sender::close`]: no more items, whatever senders remain.
    finished: AtomicBool,
    /// Set when the [`Receiver`] is dropped: nobody will pop again.
    receiver_gone: AtomicBool,
    lock: Mutex<()>,
    changed: Condvar,
    gauge: IntGauge,
    blocked_seconds: Counter,
}

impl<T> Shared<T> {
    fn notify(&self) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.changed.notify_all();
    }

    fn wait(&self, timeout: Duration, still: impl Fn() -> bool) {
        let g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if still() {
            let _ = self.changed.wait_timeout(g, timeout);
        }
    }

    fn senders_gone(&self) -> bool {
        self.finished.load(Ordering::Acquire) || self.senders.load(Ordering::Acquire) == 0
    }
}

/// The producing end. Clone it for several producers; the queue closes
/// for the receiver when the last one is dropped.
pub struct Sender<T>(Arc<Shared<T>>);

/// The consuming end; there is one. Dropping it closes the queue for the
/// senders.
pub struct Receiver<T>(Arc<Shared<T>>);

/// Reads the bytes a queue holds without being either end, so a monitor
/// can watch queues without keeping them open.
#[derive(Clone)]
pub struct Probe(Arc<dyn Fn() -> usize + Send + Sync>);

/// Why [`Sender::try_push`] gave the item back.
#[derive(Debug, PartialEq, Eq)]
pub enum TryPushError<T> {
    /// The budget or the item count is used up; try again later.
    Full(T),
    /// The receiver is gone; no push will ever succeed.
    Closed(T),
}

impl<T> TryPushError<T> {
    pub fn into_inner(self) -> T {
        match self {
            TryPushError::Full(t) | TryPushError::Closed(t) => t,
        }
    }
}

/// [`Sender::push`] failed because the receiver is gone; the item is given back.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed<T>(pub T);

#[derive(Debug, PartialEq, Eq)]
pub enum PopError {
    Timeout,
    /// Every sender is gone and the queue is drained.
    Closed,
}

/// A new queue holding at most `capacity` items and `budget` bytes.
/// `gauge` tracks the bytes held; `blocked_seconds` the producers' wait time.
pub fn byte_queue<T: Weighted>(
    capacity: usize,
    budget: usize,
    gauge: IntGauge,
    blocked_seconds: Counter,
) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        items: ArrayQueue::new(capacity.max(1)),
        bytes: AtomicUsize::new(0),
        budget: budget.max(1),
        senders: AtomicUsize::new(1),
        finished: AtomicBool::new(false),
        receiver_gone: AtomicBool::new(false),
        lock: Mutex::new(()),
        changed: Condvar::new(),
        gauge,
        blocked_seconds,
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl<T: Weighted + Send + 'static> Sender<T> {
    /// A handle that reads the bytes held, for the memory monitor.
    pub fn probe(&self) -> Probe {
        let shared = self.0.clone();
        Probe(Arc::new(move || shared.bytes.load(Ordering::Acquire)))
    }
}

impl<T: Weighted> Sender<T> {
    pub fn bytes(&self) -> usize {
        self.0.bytes.load(Ordering::Acquire)
    }

    /// Whether the receiver is gone (or a sender closed the queue), so
    /// that every push fails.
    pub fn is_closed(&self) -> bool {
        self.0.receiver_gone.load(Ordering::Acquire) || self.0.finished.load(Ordering::Acquire)
    }

    /// Ends the stream for the receiver now, even while other senders
    /// live: it drains what is queued, then sees [`PopError::Closed`].
    pub fn close(&self) {
        self.0.finished.store(true, Ordering::Release);
        self.0.notify();
    }

    /// Tries once.
    pub fn try_push(&self, item: T) -> Result<(), TryPushError<T>> {
        let q = &*self.0;
        if self.is_closed() {
            return Err(TryPushError::Closed(item));
        }
        let charge = item.weight().min(q.budget);
        let _g = q.lock.lock().unwrap_or_else(|e| e.into_inner());
        let used = q.bytes.load(Ordering::Acquire);
        if used > 0 && used + charge > q.budget {
            return Err(TryPushError::Full(item));
        }
        q.items
            .push((item, charge))
            .map_err(|(item, _)| TryPushError::Full(item))?;
        q.bytes.fetch_add(charge, Ordering::AcqRel);
        q.gauge.add(charge as i64);
        q.changed.notify_all();
        Ok(())
    }

    /// Blocks until the item fits. Gives it back only if the receiver is gone.
    pub fn push(&self, mut item: T) -> Result<(), Closed<T>> {
        let started = Instant::now();
        let mut waited = false;
        loop {
            match self.try_push(item) {
                Ok(()) => break,
                Err(TryPushError::Closed(back)) => return Err(Closed(back)),
                Err(TryPushError::Full(back)) => {
                    item = back;
                    waited = true;
                    self.0.wait(Duration::from_millis(50), || !self.is_closed());
                }
            }
        }
        if waited {
            self.0
                .blocked_seconds
                .inc_by(started.elapsed().as_secs_f64());
        }
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::AcqRel);
        Sender(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.notify();
        }
    }
}

impl<T: Weighted> Receiver<T> {
    pub fn bytes(&self) -> usize {
        self.0.bytes.load(Ordering::Acquire)
    }

    /// Waits up to `timeout` for an item.
    pub fn pop(&self, timeout: Duration) -> Result<T, PopError> {
        let q = &*self.0;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((item, charge)) = q.items.pop() {
                q.bytes.fetch_sub(charge, Ordering::AcqRel);
                q.gauge.sub(charge as i64);
                q.notify();
                return Ok(item);
            }
            // Checked after the pop: a sender's last push happens before
            // its drop, so an empty queue with no senders stays empty.
            if q.senders_gone() && q.items.is_empty() {
                return Err(PopError::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(PopError::Timeout);
            }
            q.wait((deadline - now).min(Duration::from_millis(50)), || {
                q.items.is_empty() && !q.senders_gone()
            });
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.0.receiver_gone.store(true, Ordering::Release);
        // What is left is never popped: give its bytes back to the gauge.
        while let Some((_, charge)) = self.0.items.pop() {
            self.0.bytes.fetch_sub(charge, Ordering::AcqRel);
            self.0.gauge.sub(charge as i64);
        }
        self.0.notify();
    }
}

impl Probe {
    pub fn bytes(&self) -> usize {
        (self.0)()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    struct W(usize);
    impl Weighted for W {
        fn weight(&self) -> usize {
            self.0
        }
    }

    fn q(budget: usize) -> (Sender<W>, Receiver<W>) {
        byte_queue(
            16,
            budget,
            IntGauge::new("g", "g").unwrap(),
            Counter::new("c", "c").unwrap(),
        )
    }

    #[test]
    fn budget_is_in_bytes() {
        let (tx, _rx) = q(100);
        assert!(tx.try_push(W(60)).is_ok());
        assert_eq!(tx.try_push(W(60)), Err(TryPushError::Full(W(60))));
        assert!(tx.try_push(W(40)).is_ok());
        assert_eq!(tx.bytes(), 100);
    }

    #[test]
    fn an_oversized_item_enters_an_empty_queue() {
        let (tx, rx) = q(100);
        assert!(tx.try_push(W(1000)).is_ok());
        assert_eq!(tx.bytes(), 100);
        assert!(tx.try_push(W(1)).is_err());
        rx.pop(Duration::ZERO).unwrap();
        assert_eq!(rx.bytes(), 0);
    }

    #[test]
    fn dropping_the_last_sender_drains_then_reports_closed() {
        let (tx, rx) = q(100);
        let tx2 = tx.clone();
        tx.push(W(1)).unwrap();
        drop(tx);
        assert_eq!(rx.pop(Duration::ZERO), Ok(W(1)));
        assert_eq!(
            rx.pop(Duration::ZERO),
            Err(PopError::Timeout),
            "one sender left"
        );
        tx2.push(W(2)).unwrap();
        drop(tx2);
        assert_eq!(rx.pop(Duration::ZERO), Ok(W(2)), "drained first");
        assert_eq!(rx.pop(Duration::ZERO), Err(PopError::Closed));
    }

    #[test]
    fn close_ends_the_stream_while_other_senders_live() {
        let (tx, rx) = q(100);
        let _other = tx.clone();
        tx.push(W(1)).unwrap();
        tx.close();
        assert!(tx.push(W(2)).is_err());
        assert_eq!(rx.pop(Duration::ZERO), Ok(W(1)));
        assert_eq!(rx.pop(Duration::ZERO), Err(PopError::Closed));
    }

    #[test]
    fn dropping_the_receiver_fails_pushes_and_frees_the_budget() {
        let gauge = IntGauge::new("g", "g").unwrap();
        let (tx, rx) = byte_queue(16, 100, gauge.clone(), Counter::new("c", "c").unwrap());
        tx.push(W(30)).unwrap();
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.try_push(W(1)), Err(TryPushError::Closed(W(1))));
        assert_eq!(tx.push(W(1)), Err(Closed(W(1))));
        assert_eq!(gauge.get(), 0, "unpopped items are not counted as held");
    }

    #[test]
    fn a_blocked_producer_resumes_when_space_frees() {
        let (tx, rx) = q(10);
        tx.push(W(10)).unwrap();
        let t = std::thread::spawn(move || tx.push(W(10)).is_ok());
        std::thread::sleep(Duration::from_millis(20));
        rx.pop(Duration::from_secs(1)).unwrap();
        assert!(t.join().unwrap());
        assert_eq!(rx.bytes(), 10);
    }

    #[test]
    fn a_producer_blocked_on_a_full_queue_is_released_when_the_consumer_dies() {
        let (tx, rx) = q(10);
        tx.push(W(10)).unwrap();
        let t = std::thread::spawn(move || tx.push(W(10)));
        std::thread::sleep(Duration::from_millis(20));
        // A consumer that panics drops its receiver as it unwinds.
        let consumer = std::thread::spawn(move || {
            let _rx = rx;
            panic!("stage died");
        });
        assert!(consumer.join().is_err());
        assert_eq!(t.join().unwrap(), Err(Closed(W(10))));
    }

    #[test]
    fn a_consumer_waiting_on_an_empty_queue_is_released_when_the_producer_dies() {
        let (tx, rx) = q(10);
        let producer = std::thread::spawn(move || {
            let _tx = tx;
            panic!("stage died");
        });
        assert!(producer.join().is_err());
        assert_eq!(rx.pop(Duration::from_secs(5)), Err(PopError::Closed));
    }
}
