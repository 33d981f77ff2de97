//! The budget of request bytes in flight: bodies waiting for or under judgment share it, so that
//! a replica's memory stays bounded whatever the number of concurrent reviews. A request reserves
//! what it is about to buffer before it reads it (its Content-Length up front when it gives one,
//! else as its chunks arrive) and gives it back when its answer is done; what does not fit waits a
//! little and is then refused, rather than growing the heap.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The default budget. A 3 MiB review costs its body plus ~25 MiB while it is decoded (one at a
/// time), over a ~14 MiB process: 16 MiB of bodies keeps a replica under 64 MiB of RSS however
/// many such reviews arrive at once (`scripts/memory-bench.sh`).
pub const DEFAULT_BUDGET_BYTES: usize = 16 * 1024 * 1024;

/// The bytes in flight ran out: the request was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{wanted} more bytes did not fit in {limit} bytes of reviews in flight within {waited:?}")]
pub struct Exhausted {
    pub wanted: usize,
    pub limit: usize,
    pub waited: Duration,
}

/// One replica's budget; clones share it.
#[derive(Clone)]
pub struct Budget {
    inner: Arc<Inner>,
}

struct Inner {
    limit: usize,
    used: AtomicUsize,
    /// Requests waiting for room: only then does a release wake anyone.
    waiting: AtomicUsize,
    freed: Notify,
    gauge: Gauge,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget").field("limit", &self.limit()).field("in_flight", &self.in_flight()).finish()
    }
}

impl Budget {
    /// A budget of `limit` bytes whose use `gauge` follows.
    pub fn new(limit: usize, gauge: Gauge) -> Self {
        Self {
            inner: Arc::new(Inner {
                limit,
                used: AtomicUsize::new(0),
                waiting: AtomicUsize::new(0),
                freed: Notify::new(),
                gauge,
            }),
        }
    }

    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes reserved now.
    pub fn in_flight(&self) -> usize {
        self.inner.used.load(Ordering::Acquire)
    }

    /// An empty reservation, grown with [`Reservation::grow`]; what it holds goes back when it drops.
    pub fn reservation(&self) -> Reservation {
        Reservation { inner: self.inner.clone(), bytes: 0 }
    }
}

impl Inner {
    fn try_take(&self, n: usize) -> bool {
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&after| after <= self.limit)
            })
            .is_ok();
        if taken {
            self.gauge.inc_by(to_i64(n));
        }
        taken
    }

    fn give_back(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.used.fetch_sub(n, Ordering::AcqRel);
        self.gauge.dec_by(to_i64(n));
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.freed.notify_waiters();
        }
    }
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Bytes of one request's body, held until the reservation drops (answered, refused, or the
/// client gone: every path gives them back).
pub struct Reservation {
    inner: Arc<Inner>,
    bytes: usize,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation").field("bytes", &self.bytes).finish()
    }
}

impl Reservation {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Reserves `n` more bytes, waiting at most `wait` for room. First come is not first
    /// served: a small review slips past a large one that does not fit yet, so that a flood of
    /// large reviews does not hold up the API server's ordinary ones.
    pub async fn grow(&mut self, n: usize, wait: Duration) -> Result<(), Exhausted> {
        let inner = &*self.inner;
        if n > inner.limit.saturating_sub(self.bytes) {
            // It can never fit, even alone: do not make it wait.
            return Err(Exhausted { wanted: n, limit: inner.limit, waited: Duration::ZERO });
        }
        if inner.try_take(n) {
            self.bytes += n;
            return Ok(());
        }
        let started = Instant::now();
        let deadline = started + wait;
        inner.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(inner);
        loop {
            let freed = inner.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so that a release between the two is not missed.
            freed.as_mut().enable();
            if inner.try_take(n) {
                self.bytes += n;
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(Exhausted { wanted: n, limit: inner.limit, waited: started.elapsed() });
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.inner.give_back(self.bytes);
    }
}

/// Counts a waiter however its wait ends (room, deadline, or the request dropped).
struct Waiting<'a>(&'a Inner);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: usize) -> (Budget, Gauge) {
        let gauge = Gauge::default();
        (Budget::new(limit, gauge.clone()), gauge)
    }

    fn soon() -> Duration {
        Duration::from_millis(50)
    }

    #[tokio::test]
    async fn reservations_add_up_and_go_back_when_dropped() {
        let (b, gauge) = budget(100);
        let mut r1 = b.reservation();
        r1.grow(60, soon()).await.unwrap();
        r1.grow(10, soon()).await.unwrap();
        let mut r2 = b.reservation();
        r2.grow(30, soon()).await.unwrap();
        assert_eq!((b.in_flight(), gauge.get()), (100, 100));
        drop(r1);
        assert_eq!((b.in_flight(), gauge.get()), (30, 30));
        drop(r2);
        assert_eq!((b.in_flight(), gauge.get()), (0, 0));
    }

    #[tokio::test]
    async fn what_does_not_fit_waits_until_its_deadline_then_is_refused_and_holds_nothing() {
        let (b, _) = budget(100);
        let mut held = b.reservation();
        held.grow(80, soon()).await.unwrap();
        let mut r = b.reservation();
        r.grow(10, soon()).await.unwrap();
        let e = r.grow(20, Duration::from_millis(200)).await.unwrap_err();
        assert_eq!((e.wanted, e.limit), (20, 100));
        assert!(e.waited >= Duration::from_millis(200), "{e:?}");
        // The refused part was never taken; what `r` holds goes back with it.
        assert_eq!(b.in_flight(), 90);
        drop(r);
        assert_eq!(b.in_flight(), 80);
        assert_eq!(b.inner.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_waiter_gets_room_as_soon_as_it_is_freed() {
        let (b, _) = budget(100);
        let mut held = b.reservation();
        held.grow(100, soon()).await.unwrap();
        let waiter = tokio::spawn({
            let b = b.clone();
            async move {
                let mut r = b.reservation();
                r.grow(50, Duration::from_secs(10)).await.map(|()| r.bytes())
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(50));
        assert_eq!(b.in_flight(), 0);
    }

    #[tokio::test]
    async fn more_than_the_whole_budget_is_refused_at_once() {
        let (b, _) = budget(100);
        let mut r = b.reservation();
        r.grow(60, soon()).await.unwrap();
        let e = r.grow(41, Duration::from_secs(60)).await.unwrap_err();
        assert_eq!(e.waited, Duration::ZERO);
        assert_eq!(b.in_flight(), 60);
    }

    #[tokio::test]
    async fn a_waiter_dropped_mid_wait_leaves_nothing_behind() {
        let (b, _) = budget(10);
        let mut held = b.reservation();
        held.grow(10, soon()).await.unwrap();
        let mut r = b.reservation();
        let wait = r.grow(5, Duration::from_secs(5));
        assert!(tokio::time::timeout(Duration::from_millis(10), wait).await.is_err());
        drop(r);
        assert_eq!(b.inner.waiting.load(Ordering::Acquire), 0);
        drop(held);
        assert_eq!(b.in_flight(), 0);
    }
}
