//! Connection time limits of the listeners: what a client that connects and then says nothing
//! (or too little) may hold.
//!
//! Without them a connection lived as long as its client kept it open: the HTTP layer waits
//! for the first bytes of a request with no deadline (axum-server's only limit is the TLS
//! handshake's, 10 s), and hyper's header timeout needs a timer no one had given it. A peer
//! could hold thousands of idle connections, each a file descriptor, until accepting failed.
//!
//! - [`FirstRequestAcceptor`]: a connection (after its TLS handshake) must send the first byte
//!   of a request within [`ConnLimits::first_request`], or it is closed.
//! - HTTP/1: a request's header must arrive whole within [`ConnLimits::header_read`] (hyper's
//!   `header_read_timeout`, which also bounds the wait for the next request on a kept-alive
//!   connection).
//! - HTTP/2: a ping every [`ConnLimits::h2_keep_alive`]; a peer that does not answer within
//!   [`ConnLimits::h2_keep_alive_timeout`] is closed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use hyper_util::rt::TokioTimer;
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The time limits of one listener's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// From the end of the TLS handshake (or the TCP accept) to the first byte of a request.
    pub first_request: Duration,
    /// HTTP/1: to read a request's header whole, and to wait for the next request.
    pub header_read: Duration,
    /// HTTP/2: how often an idle connection is pinged.
    pub h2_keep_alive: Duration,
    /// HTTP/2: how long a ping's answer may take before the connection is closed.
    pub h2_keep_alive_timeout: Duration,
}

impl Default for ConnLimits {
    /// 30 s for the first request and for a header (hyper's default header timeout, and
    /// nginx's `client_header_timeout` of 60 s halved), a ping a minute, 20 s for its answer.
    fn default() -> ConnLimits {
        ConnLimits {
            first_request: Duration::from_secs(30),
            header_read: Duration::from_secs(30),
            h2_keep_alive: Duration::from_secs(60),
            h2_keep_alive_timeout: Duration::from_secs(20),
        }
    }
}

impl ConnLimits {
    /// Sets the HTTP limits on a listener's connection builder.
    pub fn apply<E>(&self, builder: &mut Builder<E>) {
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(self.h2_keep_alive))
            .keep_alive_timeout(self.h2_keep_alive_timeout);
    }
}

/// An acceptor whose connections must start a request within a deadline
/// ([`FirstRequestDeadline`]); wraps the acceptor that makes the stream the HTTP layer reads
/// (the TLS one, so that the deadline starts after the handshake).
#[derive(Debug, Clone)]
pub struct FirstRequestAcceptor<A> {
    inner: A,
    limit: Duration,
}

impl<A> FirstRequestAcceptor<A> {
    /// `inner`'s connections, each closed unless a byte arrives within `limit`.
    pub fn new(inner: A, limit: Duration) -> FirstRequestAcceptor<A> {
        FirstRequestAcceptor { inner, limit }
    }
}

impl<A, I, S> Accept<I, S> for FirstRequestAcceptor<A>
where
    A: Accept<I, S>,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = FirstRequestDeadline<A::Stream>;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let accepted = self.inner.accept(stream, service);
        let limit = self.limit;
        Box::pin(async move {
            let (stream, service) = accepted.await?;
            Ok((FirstRequestDeadline::new(stream, limit), service))
        })
    }
}

/// A stream whose reads fail with [`io::ErrorKind::TimedOut`] if no byte has arrived by its
/// deadline; once one has, it is the stream itself.
#[derive(Debug)]
pub struct FirstRequestDeadline<S> {
    inner: S,
    /// `None` once a byte has been read.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> FirstRequestDeadline<S> {
    /// `inner`, which must yield a byte within `limit` from now.
    pub fn new(inner: S, limit: Duration) -> FirstRequestDeadline<S> {
        FirstRequestDeadline {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(limit))),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstRequestDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.deadline = None;
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if expired {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request within the connection's first-request limit",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstRequestDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
