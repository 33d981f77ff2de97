//! A client-side limit on the requests sent to an API server, as client-go's QPS and burst: a
//! token bucket (`governor`'s GCRA) in front of every request of a kube `Client`, whatever sends
//! it (the loops, the watches, the Lease). A watch costs one token when it starts, as in client-go;
//! its events cost nothing. Requests beyond the burst wait for a token rather than fail.
//!
//! The limit is a last line of defence: the loops' backoff (`reconcile::backoff`) is what keeps a
//! persistent error from becoming a flood; this bounds whatever gets past it.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use kube::client::ClientBuilder;
use kube::{Client, Config};
use tower::{Layer, Service};

/// Requests per second and burst; a `qps` of 0 (or less) turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ApiRateLimit {
    pub qps: f64,
    pub burst: u32,
}

impl ApiRateLimit {
    /// The defaults of `serve`: far above what converging 5 000 namespaces on 10 clusters asks for
    /// in steady state (about 330 writes a second), so they cost that nothing, yet a bound on what a
    /// bug or a storm could send.
    pub const DEFAULT: Self = Self { qps: DEFAULT_QPS, burst: DEFAULT_BURST };

    /// The token bucket, or `None` when the limit is off.
    fn quota(&self) -> Option<Quota> {
        if !(self.qps.is_finite() && self.qps > 0.0) {
            return None;
        }
        // One token every 1/qps seconds (a fractional qps, like client-go's float, works too).
        let period = Duration::from_secs_f64(1.0 / self.qps).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(self.burst.max(1))?;
        Some(Quota::with_period(period)?.allow_burst(burst))
    }

    /// The layer that applies this limit to one client.
    pub fn layer(&self) -> RateLimitLayer {
        RateLimitLayer { limiter: self.quota().map(|q| Arc::new(RateLimiter::direct(q))) }
    }
}

/// The default `--kube-api-qps`.
pub const DEFAULT_QPS: f64 = 1000.0;
/// The default `--kube-api-burst`.
pub const DEFAULT_BURST: u32 = 2000;

impl Default for ApiRateLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A kube client from `config` whose every request first takes a token of `limit`.
pub fn client(config: Config, limit: ApiRateLimit) -> Result<Client, kube::Error> {
    Ok(ClientBuilder::try_from(config)?.with_layer(&limit.layer()).build())
}

/// A tower layer that makes each request wait for a token.
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> RateLimited<S> {
        RateLimited { inner, limiter: self.limiter.clone(), permitted: false, waiting: None }
    }
}

/// The service of [`RateLimitLayer`]. The token is taken in `poll_ready`, which kube's client
/// (a buffer in front of the stack) calls once it has a request to send, so the request waits in
/// the buffer's queue, not in flight.
pub struct RateLimited<S> {
    inner: S,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    /// A token is held for the next call.
    permitted: bool,
    /// The wait for a token, when the bucket was empty.
    waiting: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl<S, Req> Service<Req> for RateLimited<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let Some(limiter) = &self.limiter
            && !self.permitted
        {
            if self.waiting.is_none() {
                // The usual case: a token is there, and taking it allocates nothing.
                if limiter.check().is_ok() {
                    self.permitted = true;
                } else {
                    let limiter = limiter.clone();
                    self.waiting = Some(Box::pin(async move { limiter.until_ready().await }));
                }
            }
            if let Some(wait) = self.waiting.as_mut() {
                ready!(wait.as_mut().poll(cx));
                self.waiting = None;
                self.permitted = true;
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.permitted = false;
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tower::ServiceExt;

    type Answer = std::future::Ready<Result<u32, std::convert::Infallible>>;

    /// A service that answers at once.
    fn echo() -> impl Service<u32, Response = u32, Error = std::convert::Infallible, Future = Answer> {
        tower::service_fn(|x: u32| std::future::ready(Ok(x)))
    }

    #[tokio::test]
    async fn the_burst_goes_at_once_and_the_rest_at_the_rate() {
        let limit = ApiRateLimit { qps: 50.0, burst: 10 };
        let mut svc = limit.layer().layer(echo());
        let started = Instant::now();
        for i in 0..10 {
            assert_eq!(svc.ready().await.unwrap().call(i).await.unwrap(), i);
        }
        assert!(started.elapsed() < Duration::from_millis(100), "the burst waited: {:?}", started.elapsed());
        // 10 more at 50/s: about 200 ms.
        for i in 0..10 {
            svc.ready().await.unwrap().call(i).await.unwrap();
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(170), "not limited: {took:?}");
        assert!(took < Duration::from_secs(2), "too slow: {took:?}");
    }

    #[tokio::test]
    async fn a_qps_of_zero_turns_the_limit_off() {
        let mut svc = ApiRateLimit { qps: 0.0, burst: 1 }.layer().layer(echo());
        let started = Instant::now();
        for i in 0..1000 {
            svc.ready().await.unwrap().call(i).await.unwrap();
        }
        assert!(started.elapsed() < Duration::from_millis(500));
        assert!(ApiRateLimit { qps: f64::NAN, burst: 1 }.quota().is_none());
    }

    #[test]
    fn a_fractional_qps_is_a_period() {
        assert!(ApiRateLimit { qps: 0.5, burst: 1 }.quota().is_some());
        assert!(ApiRateLimit::DEFAULT.quota().is_some());
    }
}
