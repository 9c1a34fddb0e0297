//! Per-client-IP rate limits at the edge (GCRA, `governor`), keyed by the
//! client address that `shared::client_ip` derives: `X-Forwarded-For` counts
//! only when the peer is the trusted gateway. In memory, per instance: the
//! per-account limits (Redis, shared) are what holds across instances.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use futures_util::future::{ready, Either, Ready};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use shared::client_ip::{client_ip, TrustedProxies};
use shared::metrics::Metrics;
use shared::ApiError;

/// Forget idle addresses every this many checks, so the table stays small.
const PRUNE_EVERY: u64 = 4096;

#[derive(Clone)]
pub struct IpLimit {
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    trusted: TrustedProxies,
    checks: Arc<AtomicU64>,
    /// `rate_limit_refusals_total{limit}`, once [`Self::counted`].
    refusals: Option<shared::metrics::IntCounter>,
}

/// `count` requests per `per`, as a burst that refills evenly.
pub fn per_ip(trusted: &TrustedProxies, count: u32, per: Duration) -> Option<IpLimit> {
    let burst = NonZeroU32::new(count)?;
    let quota = Quota::with_period(per / count)?.allow_burst(burst);
    Some(IpLimit {
        limiter: Arc::new(RateLimiter::keyed(quota)),
        trusted: trusted.clone(),
        checks: Arc::new(AtomicU64::new(0)),
        refusals: None,
    })
}

impl IpLimit {
    /// Counts its refusals in `rate_limit_refusals_total{limit=<name>}`.
    #[must_use]
    pub fn counted(mut self, metrics: &Metrics, name: &str) -> Self {
        self.refusals = Some(metrics.rate_limit_refusals.with_label_values(&[name]));
        self
    }

    /// Counts the request against its client address; 429 with
    /// `Retry-After` when over the limit.
    pub fn check(&self, req: &ServiceRequest) -> Result<(), ApiError> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        // Every TCP connection has a peer address; a request without one
        // cannot be attributed, so it is not let through.
        let ip = client_ip(req.request(), &self.trusted).ok_or(ApiError::Forbidden)?;
        self.limiter.check_key(&ip).map_err(|not_until| {
            if let Some(refusals) = &self.refusals {
                refusals.inc();
            }
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            }
        })
    }
}

/// For `wrap_fn`: the wrapped service runs only within the limit.
pub fn limited<S, B>(
    limit: &IpLimit,
    req: ServiceRequest,
    service: &S,
) -> Either<S::Future, Ready<Result<ServiceResponse<B>, actix_web::Error>>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    match limit.check(&req) {
        Ok(()) => Either::Left(service.call(req)),
        Err(e) => Either::Right(ready(Err(e.into()))),
    }
}
