//! The worker's HTTP listener: `/metrics` (Prometheus text), `/healthz` (the
//! process is alive) and `/readyz` (every consumer is caught up or a standby).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::health::Health;
use crate::{Error, Result};

/// What the listener serves from.
#[derive(Clone, Debug)]
struct Endpoints {
    /// Renders `/metrics`.
    metrics: PrometheusHandle,
    /// Answers `/readyz`.
    health: Health,
}

/// Binds `addr` and serves the endpoints until `shutdown`; returns the bound
/// address (useful with port 0).
///
/// # Errors
/// [`Error::Config`] when the address cannot be bound.
pub(crate) async fn serve(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    health: Health,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await.map_err(|e| Error::Config {
        name: "REMQ_METRICS_ADDR",
        value: addr.to_string(),
        reason: format!("cannot listen there ({e}); choose a free host:port"),
    })?;
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(addr = %bound, "serving /metrics, /healthz and /readyz");
    let endpoints = Endpoints { metrics, health };
    let connections = tracker.clone();
    tracker.spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::debug!(%error, "accepting a metrics connection failed");
                        continue;
                    }
                },
            };
            let (endpoints, shutdown) = (endpoints.clone(), shutdown.clone());
            connections.spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let response = endpoints.respond(&request);
                    async move { Ok::<_, Infallible>(response) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(connection);
                tokio::select! {
                    _ = &mut connection => {}
                    _ = shutdown.cancelled() => connection.as_mut().graceful_shutdown(),
                }
            });
        }
    });
    Ok(bound)
}

impl Endpoints {
    fn respond<B>(&self, request: &Request<B>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".to_owned());
        }
        match request.uri().path() {
            "/metrics" => {
                self.metrics.run_upkeep();
                let mut response = text(StatusCode::OK, self.metrics.render());
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            "/healthz" => text(StatusCode::OK, "ok\n".to_owned()),
            "/readyz" => {
                let (ready, body) = self.health.readiness();
                let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                text(status, body)
            }
            _ => text(StatusCode::NOT_FOUND, "try /metrics, /healthz or /readyz\n".to_owned()),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
