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

use super::health::Health;
use crate::{Error, Result};

/// What the listener serves from.
#[derive(Clone, Debug)]
struct Endpoints {
    /// Renders `/metrics`.
    metrics: PrometheusHandle,
    /// Answers `/readyz`.
    health: Health,
}

/// Binds `addr` for the endpoints.
///
/// # Errors
/// [`Error::Config`] when the address cannot be bound.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| cannot_listen(addr.to_string(), &e))
}

/// Takes over a listener the application bound.
///
/// # Errors
/// [`Error::Config`] when it cannot be made non-blocking.
pub(crate) fn adopt(listener: std::net::TcpListener) -> Result<TcpListener> {
    let value = listener.local_addr().map_or_else(|_| "a listener".to_owned(), |a| a.to_string());
    listener
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(listener))
        .map_err(|e| cannot_listen(value, &e))
}

fn cannot_listen(value: String, error: &std::io::Error) -> Error {
    Error::Config {
        name: "REMQ_METRICS_ADDR",
        value,
        reason: format!("cannot listen there ({error}); choose a free host:port"),
    }
}

/// Serves the endpoints on `listener` until `shutdown`.
pub(crate) fn serve(
    listener: TcpListener,
    metrics: PrometheusHandle,
    health: Health,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    }
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
