//! Request bodies: a memory budget for those held at once, and a deadline
//! for each to arrive whole.

use hyper::body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Sleep;

/// Room for request bodies held in memory at once, across all
/// connections: a body is reserved for before it is read (its
/// `Content-Length`, or the daemon's body limit when it has none), so many
/// large uploads held just short of done cannot add up past it.
#[derive(Clone, Debug)]
pub struct BodyBudget {
    kib: Arc<Semaphore>,
    total_kib: usize,
}

/// Room reserved for one body; released when dropped.
pub struct Reservation(#[allow(dead_code)] Option<tokio::sync::OwnedSemaphorePermit>);

impl Reservation {
    /// No room held (a request without a body).
    pub fn none() -> Reservation {
        Reservation(None)
    }
}

impl BodyBudget {
    pub fn new(bytes: usize) -> BodyBudget {
        let total_kib = (bytes / 1024).clamp(1, Semaphore::MAX_PERMITS);
        BodyBudget {
            kib: Arc::new(Semaphore::new(total_kib)),
            total_kib,
        }
    }

    /// Room for a body of up to `bytes`; `None` while the budget is spent.
    pub fn reserve(&self, bytes: u64) -> Option<Reservation> {
        if bytes == 0 {
            return Some(Reservation(None));
        }
        let kib = usize::try_from(bytes.div_ceil(1024))
            .unwrap_or(usize::MAX)
            .min(self.total_kib);
        let n = u32::try_from(kib).unwrap_or(u32::MAX);
        self.kib
            .clone()
            .try_acquire_many_owned(n)
            .ok()
            .map(|p| Reservation(Some(p)))
    }
}

/// The error of a body that did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(pub Duration);

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body that fails with [`BodyTimeout`] unless it arrives whole
/// within its deadline (counted from when it is wrapped: the head's
/// arrival). Catches a body trickled a byte a second, or stalled.
pub struct DeadlineBody<B> {
    inner: B,
    limit: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<B> DeadlineBody<B> {
    pub fn new(inner: B, limit: Duration) -> DeadlineBody<B> {
        DeadlineBody {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending if self.deadline.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Some(Err(Box::new(BodyTimeout(self.limit)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
