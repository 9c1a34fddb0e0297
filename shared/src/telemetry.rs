//! `tracing` set-up: JSON lines by default (production, log files), readable
//! text with `LOG_FORMAT=pretty`. `RUST_LOG` filters as usual.

use tracing_subscriber::{fmt, EnvFilter};

pub fn init(service: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,lapin=warn,mongodb=warn,actix_server=warn"));
    let pretty = std::env::var("LOG_FORMAT").is_ok_and(|f| f == "pretty");
    let result = if pretty {
        fmt().with_env_filter(filter).with_target(false).try_init()
    } else {
        fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .try_init()
    };
    if result.is_ok() {
        tracing::info!(service, "telemetry initialised");
    }
}
