//! A small HTTP proxy between the AWS SDK and moto that injects faults on a fixed schedule:
//! some requests are answered with throttling (400 `ThrottlingException`) or a server error (500
//! `InternalServerError`) without reaching moto; some reach moto and then lose their answer
//! (the connection is closed instead), so the caller cannot know whether its write applied.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What the proxy did, by kind.
#[derive(Debug, Default)]
pub struct FaultCounts {
    /// Requests received.
    pub requests: AtomicU64,
    /// Answered 400 ThrottlingException.
    pub throttled: AtomicU64,
    /// Answered 500 InternalServerError.
    pub server_errors: AtomicU64,
    /// Forwarded, then the connection closed without an answer.
    pub dropped: AtomicU64,
}

/// The proxy; it stops when dropped.
#[derive(Debug)]
pub struct FaultyProxy {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// What it did so far.
    pub counts: Arc<FaultCounts>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Of every ten requests: the 3rd is throttled, the 6th gets a 500, the 9th loses its answer
/// after moto applied it.
fn fault_of(n: u64) -> Option<Fault> {
    match n % 10 {
        2 => Some(Fault::Throttle),
        5 => Some(Fault::ServerError),
        8 => Some(Fault::DropAnswer),
        _ => None,
    }
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Throttle,
    ServerError,
    DropAnswer,
}

/// The answer was dropped on purpose: hyper closes the connection.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("answer dropped by the fault proxy")
    }
}

impl std::error::Error for Dropped {}

fn dynamodb_error(status: StatusCode, kind: &str) -> Response<Full<Bytes>> {
    let body = format!(
        r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{kind}","message":"injected by the fault proxy"}}"#
    );
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amzn-errortype", kind)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

async fn handle(
    upstream: Arc<(reqwest::Client, String)>,
    counts: Arc<FaultCounts>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let n = counts.requests.fetch_add(1, Ordering::SeqCst);
    let fault = fault_of(n);
    match fault {
        Some(Fault::Throttle) => {
            counts.throttled.fetch_add(1, Ordering::SeqCst);
            return Ok(dynamodb_error(
                StatusCode::BAD_REQUEST,
                "ThrottlingException",
            ));
        }
        Some(Fault::ServerError) => {
            counts.server_errors.fetch_add(1, Ordering::SeqCst);
            return Ok(dynamodb_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
            ));
        }
        _ => {}
    }
    let (client, base) = &*upstream;
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map_err(|_| Dropped)?.to_bytes();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).unwrap();
    let mut forward = client.request(method, format!("{base}{path}")).body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            forward = forward.header(name.as_str(), value.as_bytes());
        }
    }
    let answer = forward.send().await.map_err(|_| Dropped)?;
    let status = answer.status().as_u16();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.map_err(|_| Dropped)?;
    if matches!(fault, Some(Fault::DropAnswer)) {
        counts.dropped.fetch_add(1, Ordering::SeqCst);
        return Err(Dropped);
    }
    let mut response = Response::builder().status(status);
    for (name, value) in &headers {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            response = response.header(name.as_str(), value.as_bytes());
        }
    }
    Ok(response.body(Full::new(bytes)).unwrap())
}

impl FaultyProxy {
    /// Starts the proxy in front of `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let counts = Arc::new(FaultCounts::default());
        let upstream = Arc::new((
            reqwest::Client::new(),
            upstream.trim_end_matches('/').to_owned(),
        ));
        let task = {
            let counts = counts.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let (upstream, counts) = (upstream.clone(), counts.clone());
                    tokio::spawn(async move {
                        let service = service_fn(move |request| {
                            handle(upstream.clone(), counts.clone(), request)
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), service)
                            .await;
                    });
                }
            })
        };
        FaultyProxy {
            url: format!("http://{addr}"),
            counts,
            task,
        }
    }
}
