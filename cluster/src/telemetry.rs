//! Process-wide telemetry: logging, the Prometheus recorder, and the TLS provider.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::ConfigError;

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus recorder, installed (with every metric of a node and a
/// coordinator described and pre-registered) on first use. One per process: several nodes in
/// one test process share it.
pub(crate) fn prometheus() -> PrometheusHandle {
    recorder(|| {
        protonn_shard::metrics::describe();
        protonn_actors::metrics::describe();
        protonn_storage::metrics::describe();
        crate::metrics::describe();
        // Every process is the one binary and may serve the dashboard (`protonn demo`).
        protonn_web::metrics::describe();
    })
}

/// The recorder of `protonn web`: only the dashboard's metrics and its guild calls (with the
/// process metrics and the build info), so that a web pod never shows among the nodes.
pub(crate) fn web_prometheus() -> PrometheusHandle {
    recorder(|| {
        protonn_actors::metrics::describe_guild_calls();
        protonn_web::metrics::describe();
        // Its sessions' store when it opens ScyllaDB itself.
        protonn_storage::metrics::describe();
    })
}

/// Installs the recorder on first use, describing the process metrics, the build info and
/// what `describe` registers; later calls return it as it is.
fn recorder(describe: impl FnOnce()) -> PrometheusHandle {
    PROMETHEUS
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(protonn_shard::metrics::IDENTIFY_WAIT.to_owned()),
                    &protonn_shard::metrics::IDENTIFY_WAIT_BUCKETS,
                )
                .expect("bucket lists are not empty")
                .set_buckets_for_metric(
                    Matcher::Full(protonn_actors::metrics::REST_PERMIT_WAIT.to_owned()),
                    &protonn_actors::metrics::REST_PERMIT_WAIT_BUCKETS,
                )
                .expect("bucket lists are not empty")
                .set_buckets_for_metric(
                    Matcher::Full(protonn_actors::metrics::EVENT_HANDLING.to_owned()),
                    &protonn_actors::metrics::EVENT_HANDLING_BUCKETS,
                )
                .expect("bucket lists are not empty")
                .set_buckets_for_metric(
                    Matcher::Full(protonn_actors::metrics::GUILD_CALL_DURATION.to_owned()),
                    &protonn_actors::metrics::GUILD_CALL_DURATION_BUCKETS,
                )
                .expect("bucket lists are not empty")
                .set_buckets_for_metric(
                    Matcher::Full(protonn_actors::metrics::TICKET_FIRST_RESPONSE.to_owned()),
                    &protonn_actors::metrics::TICKET_DURATION_BUCKETS,
                )
                .expect("bucket lists are not empty")
                .set_buckets_for_metric(
                    Matcher::Full(protonn_actors::metrics::TICKET_RESOLUTION.to_owned()),
                    &protonn_actors::metrics::TICKET_DURATION_BUCKETS,
                )
                .expect("bucket lists are not empty")
                .set_buckets_for_metric(
                    Matcher::Full(protonn_web::metrics::REQUEST_DURATION.to_owned()),
                    &protonn_web::metrics::REQUEST_BUCKETS,
                )
                .expect("bucket lists are not empty")
                .set_buckets_for_metric(
                    Matcher::Full(protonn_storage::metrics::OPERATION_DURATION.to_owned()),
                    &protonn_storage::metrics::OPERATION_DURATION_BUCKETS,
                )
                .expect("bucket lists are not empty")
                .set_buckets_for_metric(
                    Matcher::Full(crate::metrics::HANDOFF_SECONDS.to_owned()),
                    &crate::metrics::HANDOFF_BUCKETS,
                )
                .expect("bucket lists are not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed in this process");
            crate::process::describe();
            crate::metrics::register_build_info();
            describe();
            handle
        })
        .clone()
}

/// Where log lines go: people read `text`; collectors (Loki, Elasticsearch) parse `json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// `PROTONN_LOG_FORMAT` (`text`, the default, or `json`).
pub(crate) fn log_format() -> Result<LogFormat, ConfigError> {
    parse_log_format(std::env::var("PROTONN_LOG_FORMAT").ok().as_deref())
}

fn parse_log_format(value: Option<&str>) -> Result<LogFormat, ConfigError> {
    match value.map(str::trim) {
        None | Some("" | "text") => Ok(LogFormat::Text),
        Some("json") => Ok(LogFormat::Json),
        Some(other) => Err(ConfigError::Env {
            name: "PROTONN_LOG_FORMAT",
            message: format!("`{other}` is neither `text` nor `json`"),
        }),
    }
}

/// Logs to stderr in `format`; `RUST_LOG` overrides `default_filter`.
pub(crate) fn init_logging(default_filter: &str, format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second call (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        // Colours only for a person at a terminal, not in log files and collectors.
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}

/// TLS for the real gateway and REST uses rustls with ring; twilight needs the process-wide
/// provider chosen before it builds a connection.
pub(crate) fn install_tls_provider() {
    // Err means a provider is already installed, which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_format_is_text_json_or_a_clear_error() {
        assert_eq!(parse_log_format(None).unwrap(), LogFormat::Text);
        assert_eq!(parse_log_format(Some("text")).unwrap(), LogFormat::Text);
        assert_eq!(parse_log_format(Some("json")).unwrap(), LogFormat::Json);
        let err = parse_log_format(Some("xml")).unwrap_err().to_string();
        assert_eq!(
            err,
            "environment variable PROTONN_LOG_FORMAT: `xml` is neither `text` nor `json`"
        );
    }
}
