//! The HTTP server every service runs: the same middleware stack, app data,
//! health and metrics routes; the service adds its own routes. Also the
//! running-application handle that drives graceful shutdown.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpServer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::TokenVerifier;
use crate::client_ip::TrustedProxies;
use crate::error::ApiError;
use crate::health::Readiness;
use crate::http;
use crate::metrics::Metrics;

/// The longest a request waits for its handler: the contract promises a
/// 503 within 5 s when a dependency hangs. Database, Redis and broker calls
/// have their own shorter timeouts where the driver offers one; this bounds
/// everything else (a hung server that keeps its socket open).
pub const REQUEST_DEADLINE: Duration = Duration::from_millis(4500);

/// Answers 503 problem+json once [`REQUEST_DEADLINE`] has passed. The
/// handler is not cancelled but left to finish in the background: a write
/// and what follows it (its event, a cache bump) are never cut apart
/// halfway, and a client retrying with the same idempotency key finds the
/// result.
async fn deadline(
    req: actix_web::dev::ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let mut handler = actix_web::rt::spawn(next.call(req));
    let failed = match tokio::time::timeout(REQUEST_DEADLINE, &mut handler).await {
        Ok(Ok(response)) => {
            return response.map(actix_web::dev::ServiceResponse::map_into_boxed_body)
        }
        Ok(Err(panicked)) => ApiError::Unexpected(anyhow::anyhow!("handler failed: {panicked}")),
        Err(_) => ApiError::Unavailable(anyhow::anyhow!(
            "the request did not finish within its {} ms deadline",
            REQUEST_DEADLINE.as_millis()
        )),
    };
    // The request went with the handler (a clone held here would break
    // routing): the error answers, hardened by the outer layers.
    Err(failed.into())
}

/// What every service installs in its app.
#[derive(Clone)]
pub struct HttpParts {
    pub metrics: Metrics,
    pub readiness: Readiness,
    pub verifier: TokenVerifier,
    pub allowed_origins: Vec<String>,
    pub trusted_proxies: TrustedProxies,
    pub shutdown_timeout_secs: u64,
}

/// Starts serving on `listener`. `routes` adds the service's own routes and
/// app data.
pub fn serve<F>(listener: TcpListener, parts: HttpParts, routes: F) -> std::io::Result<Server>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let timeout = parts.shutdown_timeout_secs;
    let server = HttpServer::new(move || {
        App::new()
            .wrap(from_fn(deadline))
            .wrap(http::cors(&parts.allowed_origins))
            .wrap(from_fn(http::request_context))
            .wrap(from_fn(http::harden))
            .app_data(web::Data::new(parts.metrics.clone()))
            .app_data(web::Data::new(parts.readiness.clone()))
            .app_data(web::Data::new(parts.verifier.clone()))
            .app_data(web::Data::new(parts.trusted_proxies.clone()))
            .app_data(http::query_config())
            .app_data(http::path_config())
            .configure(crate::health::routes)
            .configure(routes.clone())
    })
    .listen(listener)?
    .disable_signals()
    .shutdown_timeout(timeout)
    .run();
    Ok(server)
}

/// A built service: its server plus background tasks (consumers, relays),
/// all stopped by one token.
pub struct Running {
    pub port: u16,
    pub server: Server,
    pub shutdown: CancellationToken,
    pub tasks: Vec<JoinHandle<()>>,
}

impl Running {
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until the token is cancelled (SIGTERM in `main`, or a test),
    /// then drains in-flight requests and waits for the background tasks to
    /// finish their current work.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let token = self.shutdown.clone();
        let stopper = tokio::spawn(async move {
            token.cancelled().await;
            handle.stop(true).await;
        });
        let result = self.server.await;
        self.shutdown.cancel();
        let _ = stopper.await;
        for task in self.tasks {
            let _ = task.await;
        }
        tracing::info!("stopped");
        result
    }
}
