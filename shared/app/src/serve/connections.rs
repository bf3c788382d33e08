//! The accept loop of `azs-usage serve`, with or without TLS. It is ours rather than `axum::serve`'s
//! because that one bounds nothing: a client could hold a connection forever by sending half a header,
//! and any number of such clients could be open at once.
//!
//! Each connection holds one of [`ServeLimits::max_connections`] slots from accept to close. With all
//! slots taken the loop stops accepting: further clients wait in the kernel's listen backlog (and are
//! refused by the kernel only when that is full) until a connection closes.

use super::ServeLimits;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// How long connections still open at shutdown may take to finish their request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A plain or TLS byte stream; one type, so one connection path serves both.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// Serves `app` on `listener` until `shutdown` completes, then lets open connections finish their
/// request (for at most [`SHUTDOWN_GRACE`]) and closes the rest.
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop, stopping) = watch::channel(false);
    let mut http = http1::Builder::new();
    // hyper starts this timer when it waits for a request's header: on a new connection, and again
    // the moment an answer is finished, so it also closes keep-alive connections left idle.
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // A slot before accepting: beyond the cap, connections wait in the backlog, unaccepted.
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Typically out of file descriptors: pause rather than spin, and keep serving.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let connection =
            serve_connection(stream, app.clone(), tls.clone(), http.clone(), limits, stopping.clone());
        connections.spawn(async move {
            connection.await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    let drained =
        tokio::time::timeout(SHUTDOWN_GRACE, async { while connections.join_next().await.is_some() {} })
            .await;
    if drained.is_err() {
        tracing::warn!(open = connections.len(), "closing connections still open after the shutdown grace");
    }
    // Dropping the set aborts whatever is left.
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    app: Router,
    tls: Option<TlsAcceptor>,
    http: http1::Builder,
    limits: ServeLimits,
    mut stopping: watch::Receiver<bool>,
) {
    let transport: Box<dyn Transport> = match tls {
        None => Box::new(stream),
        // The handshake counts against the header time: stalling it holds a slot as a half header does.
        Some(acceptor) => match tokio::time::timeout(limits.header_read, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => Box::new(stream),
            Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => return tracing::debug!("TLS handshake did not finish within the header timeout"),
        },
    };
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| app.clone().oneshot(req));
    let connection = http.serve_connection(TokioIo::new(transport), service);
    tokio::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        () = async { drop(stopping.wait_for(|stop| *stop).await) } => {
            // Finish the request in flight, if any, then close.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = ended {
        // Header timeouts, resets, malformed requests: the client's doing, not a server fault.
        tracing::debug!(error = %e, "connection ended");
    }
}
