//! Per-client-IP rate limits at the edge (actix-governor), keyed by the
//! client address that `shared::client_ip` derives: `X-Forwarded-For` counts
//! only when the peer is the trusted gateway.

use std::net::IpAddr;
use std::time::Duration;

use actix_governor::governor::clock::{Clock, DefaultClock, QuantaInstant};
use actix_governor::governor::middleware::NoOpMiddleware;
use actix_governor::governor::NotUntil;
use actix_governor::{
    GovernorConfig, GovernorConfigBuilder, KeyExtractor, SimpleKeyExtractionError,
};
use actix_web::dev::ServiceRequest;
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use shared::client_ip::{client_ip, TrustedProxies};
use shared::ApiError;

#[derive(Clone)]
pub struct ClientIpKey(pub TrustedProxies);

impl KeyExtractor for ClientIpKey {
    type Key = IpAddr;
    type KeyExtractionError = SimpleKeyExtractionError<&'static str>;

    fn extract(&self, req: &ServiceRequest) -> Result<IpAddr, Self::KeyExtractionError> {
        client_ip(req.request(), &self.0)
            .ok_or_else(|| SimpleKeyExtractionError::new("no client address"))
    }

    fn exceed_rate_limit_response(
        &self,
        negative: &NotUntil<QuantaInstant>,
        _: HttpResponseBuilder,
    ) -> HttpResponse {
        let wait = negative
            .wait_time_from(DefaultClock::default().now())
            .as_secs()
            .max(1);
        ApiError::RateLimited {
            retry_after_secs: wait,
        }
        .error_response()
    }
}

pub type IpLimit = GovernorConfig<ClientIpKey, NoOpMiddleware<QuantaInstant>>;

/// `count` requests per `per`, as a burst that refills evenly.
pub fn per_ip(trusted: &TrustedProxies, count: u32, per: Duration) -> Option<IpLimit> {
    let count = count.max(1);
    GovernorConfigBuilder::default()
        .period(per / count)
        .burst_size(count)
        .key_extractor(ClientIpKey(trusted.clone()))
        .finish()
}
