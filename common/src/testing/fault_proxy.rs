//! A fault-injecting HTTP/1.1 proxy for the S3 server (moto). It listens on
//! 127.0.0.1, forwards each request to the server on a fresh connection,
//! and, with a seeded per-request probability, injects one fault from a
//! chosen mix instead: 500, 503, S3 `SlowDown`, a dropped connection, a
//! truncated body, added latency, or a stall (the request is never
//! answered). Faults switch on and off at runtime, and every fault injected
//! is counted, so a test can prove that faults really happened.
//!
//! With every request delayed by a fixed latency and no other fault
//! ([`FaultProxy::fixed_latency`]), it turns a local S3 server into one
//! with a real store's round trip: the scale benchmark's cost model.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use super::SeededRng;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 500 InternalError; the request never reaches the server.
    Error500,
    /// 503 ServiceUnavailable; the request never reaches the server.
    Unavailable503,
    /// 503 with S3's `SlowDown` error code (throttling).
    SlowDown,
    /// The server handles the request, then the connection is closed
    /// before any response: the client cannot know whether it happened.
    Drop,
    /// The server handles the request; the response promises the whole
    /// body but the connection closes halfway. An empty body cannot be
    /// cut short, so that counts as a [`Fault::Drop`] instead.
    Truncate,
    /// The request is answered normally after a delay ([`LATENCY`]
    /// unless [`FaultProxy::set_latency`] says otherwise).
    Latency,
    /// The request is read and never answered; the connection stays open.
    Stall,
}

pub const ALL_FAULTS: [Fault; 7] = [
    Fault::Error500,
    Fault::Unavailable503,
    Fault::SlowDown,
    Fault::Drop,
    Fault::Truncate,
    Fault::Latency,
    Fault::Stall,
];

/// How long a [`Fault::Latency`] delays a request.
pub const LATENCY: Duration = Duration::from_millis(700);

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Error500 => "500",
            Fault::Unavailable503 => "503",
            Fault::SlowDown => "slowdown",
            Fault::Drop => "drop",
            Fault::Truncate => "truncate",
            Fault::Latency => "latency",
            Fault::Stall => "stall",
        }
    }
}

/// Faults injected so far, by kind, and requests seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    pub requests: u64,
    pub by_kind: Vec<(Fault, u64)>,
}

impl Injected {
    pub fn total(&self) -> u64 {
        self.by_kind.iter().map(|(_, n)| n).sum()
    }

    pub fn of(&self, f: Fault) -> u64 {
        self.by_kind
            .iter()
            .find(|(k, _)| *k == f)
            .map_or(0, |(_, n)| *n)
    }
}

impl std::fmt::Display for Injected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} faults in {} requests (", self.total(), self.requests)?;
        for (i, (k, n)) in self.by_kind.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{} {n}", k.name())?;
        }
        write!(f, ")")
    }
}

struct Plan {
    rng: SeededRng,
    /// Per-request probability, in millionths.
    rate_ppm: u64,
    /// Weights of the fault kinds.
    mix: Vec<(Fault, u64)>,
}

struct State {
    upstream: String,
    /// What a [`Fault::Latency`] waits, in microseconds.
    latency_us: AtomicU64,
    plan: Mutex<Plan>,
    requests: AtomicU64,
    counts: [AtomicU64; ALL_FAULTS.len()],
}

impl State {
    /// Draws whether this request gets a fault, and which.
    fn draw(&self) -> Option<Fault> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut p = self.plan.lock().unwrap();
        let total: u64 = p.mix.iter().map(|(_, w)| w).sum();
        if p.rate_ppm == 0 || total == 0 || p.rng.next() % 1_000_000 >= p.rate_ppm {
            return None;
        }
        let mut pick = p.rng.next() % total;
        for &(f, w) in &p.mix {
            if pick < w {
                return Some(f);
            }
            pick -= w;
        }
        None
    }

    fn count(&self, f: Fault) {
        // `ALL_FAULTS` lists the kinds in declaration order.
        self.counts[f as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// The proxy; it stops when dropped.
pub struct FaultProxy {
    pub port: u16,
    state: Arc<State>,
    _rt: tokio::runtime::Runtime,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`host:port`), with faults off. Faults
    /// are drawn from a generator seeded with `seed`.
    pub fn start(upstream: &str, seed: u64) -> FaultProxy {
        eprintln!("fault proxy seed: {seed}");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            upstream: upstream.to_owned(),
            latency_us: AtomicU64::new(LATENCY.as_micros() as u64),
            plan: Mutex::new(Plan {
                rng: SeededRng::new(seed),
                rate_ppm: 0,
                mix: Vec::new(),
            }),
            requests: AtomicU64::new(0),
            counts: Default::default(),
        });
        let st = state.clone();
        rt.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let st = st.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(st.clone(), req));
                    // An injected drop ends the connection with an error.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FaultProxy {
            port,
            state,
            _rt: rt,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// From now on, each request gets a fault with probability `rate`,
    /// its kind drawn from `mix` by weight.
    pub fn set(&self, rate: f64, mix: &[(Fault, u64)]) {
        let mut p = self.state.plan.lock().unwrap();
        p.rate_ppm = (rate.clamp(0.0, 1.0) * 1e6) as u64;
        p.mix = mix.to_vec();
    }

    /// Every kind, equally likely.
    pub fn set_all(&self, rate: f64) {
        let mix: Vec<(Fault, u64)> = ALL_FAULTS.iter().map(|&f| (f, 1)).collect();
        self.set(rate, &mix);
    }

    /// How long a [`Fault::Latency`] delays a request from now on.
    pub fn set_latency(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.state.latency_us.store(us, Ordering::Relaxed);
    }

    /// Every request from now on is delayed by `latency`, and gets no
    /// other fault: an S3 server with a real store's round trip.
    pub fn fixed_latency(&self, latency: Duration) {
        self.set_latency(latency);
        self.set(1.0, &[(Fault::Latency, 1)]);
    }

    /// No new faults. Requests already stalled stay stalled.
    pub fn off(&self) {
        self.set(0.0, &[]);
    }

    pub fn injected(&self) -> Injected {
        Injected {
            requests: self.state.requests.load(Ordering::Relaxed),
            by_kind: ALL_FAULTS
                .iter()
                .zip(&self.state.counts)
                .map(|(&f, n)| (f, n.load(Ordering::Relaxed)))
                .collect(),
        }
    }
}

/// A response body: whole, or cut short after its first part. The cut
/// waits a moment, so that hyper sends the part before it aborts the
/// connection (an error in the same poll would discard the unsent bytes).
struct Reply {
    data: Option<Bytes>,
    cut: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Reply {
    fn whole(b: Bytes) -> Reply {
        Reply {
            data: Some(b),
            cut: None,
        }
    }

    fn cut_after(part: Bytes) -> Reply {
        Reply {
            data: Some(part),
            cut: Some(Box::pin(tokio::time::sleep(Duration::from_millis(50)))),
        }
    }
}

impl Body for Reply {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        match self.cut.as_mut().map(|s| s.as_mut().poll(cx)) {
            None => Poll::Ready(None),
            Some(Poll::Pending) => Poll::Pending,
            Some(Poll::Ready(())) => {
                self.cut = None;
                Poll::Ready(Some(Err(std::io::Error::other("injected truncation"))))
            }
        }
    }
}

/// An S3 error document.
fn s3_error(status: StatusCode, code: &str, message: &str) -> Response<Reply> {
    let body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>"#
    );
    let mut r = Response::new(Reply::whole(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "application/xml".parse().unwrap());
    r
}

async fn handle(st: Arc<State>, req: Request<Incoming>) -> std::io::Result<Response<Reply>> {
    let fault = st.draw();
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    match fault {
        Some(Fault::Error500) => {
            st.count(Fault::Error500);
            let msg = "We encountered an internal error. Please try again.";
            return Ok(s3_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                msg,
            ));
        }
        Some(Fault::Unavailable503) => {
            st.count(Fault::Unavailable503);
            let msg = "Service is unable to handle request.";
            return Ok(s3_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                msg,
            ));
        }
        Some(Fault::SlowDown) => {
            st.count(Fault::SlowDown);
            let msg = "Please reduce your request rate.";
            return Ok(s3_error(StatusCode::SERVICE_UNAVAILABLE, "SlowDown", msg));
        }
        Some(Fault::Stall) => {
            st.count(Fault::Stall);
            std::future::pending::<()>().await;
        }
        Some(Fault::Latency) => {
            st.count(Fault::Latency);
            let us = st.latency_us.load(Ordering::Relaxed);
            tokio::time::sleep(Duration::from_micros(us)).await;
        }
        Some(Fault::Drop) | Some(Fault::Truncate) | None => {}
    }
    let head = parts.method == Method::HEAD;
    let up = forward(&st.upstream, Request::from_parts(parts, Full::new(body))).await?;
    let (mut parts, body) = up.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    for h in ["connection", "keep-alive", "transfer-encoding"] {
        parts.headers.remove(h);
    }
    if !head {
        parts
            .headers
            .insert("content-length", body.len().to_string().parse().unwrap());
    }
    match fault {
        Some(Fault::Truncate) if !body.is_empty() && !head => {
            st.count(Fault::Truncate);
            let half = body.slice(..body.len() / 2);
            Ok(Response::from_parts(parts, Reply::cut_after(half)))
        }
        Some(Fault::Drop) | Some(Fault::Truncate) => {
            st.count(Fault::Drop);
            Err(std::io::Error::other("injected connection drop"))
        }
        _ => Ok(Response::from_parts(parts, Reply::whole(body))),
    }
}

/// Sends one request to the server on a new connection.
async fn forward(upstream: &str, req: Request<Full<Bytes>>) -> std::io::Result<Response<Incoming>> {
    let stream = tokio::net::TcpStream::connect(upstream).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    sender
        .send_request(req)
        .await
        .map_err(std::io::Error::other)
}
