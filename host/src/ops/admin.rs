//! The admin HTTP listener (`[server.admin] listen`): `GET /metrics` in the
//! Prometheus text format, `GET /health` (the process answers) and
//! `GET /ready` (config loaded and listeners open; `503` while starting or
//! draining at shutdown). Plain HTTP/1.1 through hyper; meant for a private
//! address, it has no authentication.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use super::Ops;

/// Longest an admin connection may stay open (a scraper asks and leaves).
const CONNECTION_LIMIT: Duration = Duration::from_secs(30);

/// Whether the server takes connections, for `/ready`.
#[derive(Debug, Default)]
pub struct Readiness(AtomicU8);

const STARTING: u8 = 0;
const READY: u8 = 1;
const DRAINING: u8 = 2;

impl Readiness {
    pub fn set_ready(&self) {
        // Draining is final: a reload during shutdown must not undo it.
        let _ = self
            .0
            .compare_exchange(STARTING, READY, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub fn set_draining(&self) {
        self.0.store(DRAINING, Ordering::SeqCst);
    }

    fn state(&self) -> u8 {
        self.0.load(Ordering::SeqCst)
    }
}

/// What the admin endpoints read.
pub struct AdminState {
    pub ops: Arc<Ops>,
    pub readiness: Arc<Readiness>,
}

/// Serves admin requests on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                warn!("admin listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = respond(&state, request.method(), request.uri().path());
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_LIMIT, connection).await {
                debug!("admin connection: {e}");
            }
        });
    }
}

fn respond(state: &AdminState, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response
            .headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/metrics" => {
            let metrics = &state.ops.metrics;
            metrics
                .bans_active
                .set(state.ops.defender.active_bans() as i64);
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let tasks = runtime.metrics().num_alive_tasks();
                metrics
                    .tasks_alive
                    .set(i64::try_from(tasks).unwrap_or(i64::MAX));
            }
            let mut response = Response::new(Full::new(Bytes::from(metrics.encode())));
            response.headers_mut().insert(
                CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(super::metrics::CONTENT_TYPE),
            );
            response
        }
        "/health" => text(StatusCode::OK, "ok\n"),
        "/ready" => match state.readiness.state() {
            READY => text(StatusCode::OK, "ready\n"),
            DRAINING => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
            _ => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /health, /ready\n",
        ),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, request: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn endpoints_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let readiness = Arc::new(Readiness::default());
        let state = Arc::new(AdminState {
            ops: Ops::detached(),
            readiness: readiness.clone(),
        });
        state
            .ops
            .metrics
            .reload(super::super::metrics::ReloadResult::ok);
        let task = tokio::spawn(serve(listener, state));
        let close = "Connection: close\r\n\r\n";
        let health = get(addr, &format!("GET /health HTTP/1.1\r\nHost: x\r\n{close}")).await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        let ready = get(addr, &format!("GET /ready HTTP/1.1\r\n{close}")).await;
        assert!(ready.starts_with("HTTP/1.1 503"), "starting: {ready}");
        readiness.set_ready();
        let ready = get(addr, &format!("GET /ready HTTP/1.1\r\n{close}")).await;
        assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
        readiness.set_draining();
        readiness.set_ready();
        let ready = get(addr, &format!("GET /ready HTTP/1.1\r\n{close}")).await;
        assert!(ready.starts_with("HTTP/1.1 503"), "draining stays: {ready}");
        let metrics = get(addr, &format!("GET /metrics HTTP/1.1\r\n{close}")).await;
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(metrics.contains("text/plain; version=0.0.4"), "{metrics}");
        assert!(
            metrics.contains("wasmftpd_reloads_total{result=\"ok\"} 1"),
            "{metrics}"
        );
        let missing = get(addr, &format!("GET /nope HTTP/1.1\r\n{close}")).await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let post = get(
            addr,
            &format!("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n{close}"),
        )
        .await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        task.abort();
    }
}
