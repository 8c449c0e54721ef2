//! `/metrics`, `/healthz` and `/readyz` over plain HTTP.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::reconcile::Context;

/// Ready once the controllers run.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// The controllers run: `/readyz` answers 200 from now on.
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
}

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

async fn serve<F>(address: SocketAddr, respond: F)
where
    F: Fn(&str) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
{
    let listener = match TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!("cannot listen on {address}: {err}");
            return;
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let respond = respond.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let response = respond(request.uri().path());
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Serves the metrics in the OpenMetrics text format.
pub async fn metrics(address: SocketAddr, context: Arc<Context>) {
    serve(address, move |path| match path {
        "/metrics" => text(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            {
                let now = jiff::Timestamp::now();
                let metrics = &context.metrics;
                metrics
                    .shards_held
                    .set(context.shards.held_count(now) as i64);
                let waiting = context.queue.lock().map_or(0, |q| q.len());
                metrics.queue_length.set(waiting as i64);
                metrics.encode()
            },
        ),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    })
    .await;
}

/// Liveness (the process answers) and readiness (the controllers run).
pub async fn health(address: SocketAddr, ready: Readiness) {
    serve(address, move |path| match path {
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" if ready.0.load(Ordering::Acquire) => {
            text(StatusCode::OK, "text/plain", "ok\n".into())
        }
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "starting\n".into(),
        ),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    })
    .await;
}
