//! Faults injected at runtime and the counters tests read back.
//!
//! A fault is queued with [`SimStampHandle::inject`](crate::SimStampHandle::inject) and consumed by
//! the next request(s) of its [`RequestKind`]: each matching request consumes one unit of the
//! first queued fault that matches it, then the fault is gone and normal service resumes. Faults
//! apply before authentication and validation, like a gateway in front of the stamp, except
//! [`Fault::MalformedPage`] (consumed only by a usage request that gets a page) and
//! [`Fault::ExpireTokensAfter`] (counts successfully authenticated usage requests).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Which requests a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// `GET /metadata/endpoints`.
    Metadata,
    /// `GET .../.well-known/openid-configuration`.
    OpenId,
    /// `POST .../oauth2/token`.
    Token,
    /// `GET .../Microsoft.Commerce.Admin/subscriberUsageAggregates`.
    Usage,
    /// `GET .../Microsoft.Subscriptions.Admin/subscriptions`.
    Subscriptions,
    /// Any other path (counted in stats; faults reach it only through [`RequestKind::Any`]).
    Other,
    /// Matches every request (only meaningful in a fault).
    Any,
}

impl RequestKind {
    /// Classifies a request path (ARM paths are matched case-insensitively).
    pub(crate) fn of_path(path: &str) -> Self {
        let lower = path.to_ascii_lowercase();
        if lower == "/metadata/endpoints" {
            RequestKind::Metadata
        } else if lower.ends_with("/.well-known/openid-configuration") {
            RequestKind::OpenId
        } else if lower.ends_with("/oauth2/token") {
            RequestKind::Token
        } else if lower.ends_with("/providers/microsoft.commerce.admin/subscriberusageaggregates") {
            RequestKind::Usage
        } else if lower.ends_with("/providers/microsoft.subscriptions.admin/subscriptions") {
            RequestKind::Subscriptions
        } else {
            RequestKind::Other
        }
    }

    fn matches(self, request: RequestKind) -> bool {
        self == RequestKind::Any || self == request
    }
}

/// A misbehaviour to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 503 with the `ServiceUnavailable` body of the reference fixture.
    Status503 { kind: RequestKind, count: u32 },
    /// 429 with `Retry-After: {retry_after_secs}` and a `TooManyRequests` error body.
    Throttle429 { kind: RequestKind, count: u32, retry_after_secs: u64 },
    /// The TCP connection is closed without any HTTP response.
    ConnectionReset { kind: RequestKind, count: u32 },
    /// The request is served normally after `delay`.
    Slow { kind: RequestKind, count: u32, delay: Duration },
    /// Every token issued so far becomes invalid after `usage_requests` more successfully
    /// authenticated usage requests: the next one gets 401 `ExpiredAuthenticationToken`.
    /// Tokens issued afterwards are valid.
    ExpireTokensAfter { usage_requests: u32 },
    /// A usage page answered 200 with its JSON cut in the middle.
    MalformedPage { count: u32 },
    /// A usage request answered 504 `GatewayTimeout`.
    GatewayTimeout { count: u32 },
    /// Any status with an ARM error body and no `Retry-After`: a gateway's 520, a 501, or a 404 for a
    /// path this stamp does not serve (`count: u32::MAX` for "never").
    Status { kind: RequestKind, status: u16, count: u32 },
    /// A usage page's `nextLink` sent relative (path and query only), as a proxy may rewrite it.
    RelativeNextLink { count: u32 },
    /// A usage page after the first of its chain is served with a `nextLink` back to the chain's
    /// first page (a loop of any length: page 2 -> page 1 -> page 2 ...), once per unit.
    LoopingNextLink { count: u32 },
    /// A usage request answered 200 with an empty last page (`{"value":[]}`), as if the stamp had no
    /// usage for the window: the partial or empty re-pull a reprocess must not trust blindly.
    EmptyPage { count: u32 },
    /// A usage page whose (valid) JSON is preceded by `padding_bytes` of whitespace, streamed in
    /// chunks so that the simulator never holds it.
    OversizedPage { count: u32, padding_bytes: u64 },
    /// A usage page (of any query) served with `entries` (each one JSON object, sent exactly as given)
    /// before its own rows: rows outside the ground truth, e.g. ones no store can hold. The page's own
    /// rows are served unchanged.
    ExtraEntries { count: u32, entries: Vec<String> },
}

/// What the request pipeline must do for a fault taken from the queue.
#[derive(Debug)]
pub(crate) enum FaultAction {
    Status503,
    Throttle429 { retry_after_secs: u64 },
    ConnectionReset,
    Slow(Duration),
    GatewayTimeout,
    Status(u16),
}

struct Pending {
    fault: Fault,
    remaining: u32,
}

/// Faults waiting to be served, in injection order.
#[derive(Default)]
pub(crate) struct FaultQueue {
    pending: Vec<Pending>,
}

impl FaultQueue {
    pub fn push(&mut self, fault: Fault) {
        let remaining = match &fault {
            Fault::Status503 { count, .. }
            | Fault::Throttle429 { count, .. }
            | Fault::ConnectionReset { count, .. }
            | Fault::Slow { count, .. }
            | Fault::MalformedPage { count }
            | Fault::GatewayTimeout { count }
            | Fault::Status { count, .. }
            | Fault::RelativeNextLink { count }
            | Fault::LoopingNextLink { count }
            | Fault::EmptyPage { count }
            | Fault::OversizedPage { count, .. }
            | Fault::ExtraEntries { count, .. } => *count,
            // Handled by the token store, never queued.
            Fault::ExpireTokensAfter { .. } => 0,
        };
        if remaining > 0 {
            self.pending.push(Pending { fault, remaining });
        }
    }

    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// Takes one unit of the first fault the pipeline serves for a request of `kind`.
    pub fn take_for_request(&mut self, kind: RequestKind) -> Option<FaultAction> {
        self.take(|fault| match *fault {
            Fault::Status503 { kind: k, .. } if k.matches(kind) => Some(FaultAction::Status503),
            Fault::Throttle429 { kind: k, retry_after_secs, .. } if k.matches(kind) => {
                Some(FaultAction::Throttle429 { retry_after_secs })
            }
            Fault::ConnectionReset { kind: k, .. } if k.matches(kind) => Some(FaultAction::ConnectionReset),
            Fault::Slow { kind: k, delay, .. } if k.matches(kind) => Some(FaultAction::Slow(delay)),
            Fault::GatewayTimeout { .. } if kind == RequestKind::Usage => Some(FaultAction::GatewayTimeout),
            Fault::Status { kind: k, status, .. } if k.matches(kind) => Some(FaultAction::Status(status)),
            _ => None,
        })
    }

    /// Takes one unit of a queued [`Fault::MalformedPage`], if any.
    pub fn take_malformed_page(&mut self) -> bool {
        self.take(|fault| matches!(fault, Fault::MalformedPage { .. }).then_some(())).is_some()
    }

    /// Takes one unit of a queued [`Fault::EmptyPage`], if any.
    pub fn take_empty_page(&mut self) -> bool {
        self.take(|fault| matches!(fault, Fault::EmptyPage { .. }).then_some(())).is_some()
    }

    /// Takes one unit of a queued [`Fault::RelativeNextLink`], if any.
    pub fn take_relative_link(&mut self) -> bool {
        self.take(|fault| matches!(fault, Fault::RelativeNextLink { .. }).then_some(())).is_some()
    }

    /// Takes one unit of a queued [`Fault::LoopingNextLink`], if any.
    pub fn take_looping_link(&mut self) -> bool {
        self.take(|fault| matches!(fault, Fault::LoopingNextLink { .. }).then_some(())).is_some()
    }

    /// Takes one unit of a queued [`Fault::OversizedPage`]: the padding to send.
    pub fn take_oversized_page(&mut self) -> Option<u64> {
        self.take(|fault| match fault {
            Fault::OversizedPage { padding_bytes, .. } => Some(*padding_bytes),
            _ => None,
        })
    }

    /// Takes one unit of a queued [`Fault::ExtraEntries`]: the entries to add.
    pub fn take_extra_entries(&mut self) -> Option<Vec<String>> {
        self.take(|fault| match fault {
            Fault::ExtraEntries { entries, .. } => Some(entries.clone()),
            _ => None,
        })
    }

    fn take<T>(&mut self, mut select: impl FnMut(&Fault) -> Option<T>) -> Option<T> {
        let index = self.pending.iter().position(|p| select(&p.fault).is_some())?;
        let action = select(&self.pending[index].fault);
        self.pending[index].remaining -= 1;
        if self.pending[index].remaining == 0 {
            self.pending.remove(index);
        }
        action
    }
}

/// A snapshot of a stamp's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Requests received per kind (faulted ones included).
    pub metadata_requests: u64,
    pub openid_requests: u64,
    pub token_requests: u64,
    pub usage_requests: u64,
    pub subscription_list_requests: u64,
    pub other_requests: u64,
    /// Access tokens issued.
    pub tokens_issued: u64,
    /// Requests the stamp answered with a 4xx (validation, authentication, unknown path).
    pub rejected_requests: u64,
    /// Faults served (each unit of a fault's count, and each token expiry triggered).
    pub faults_served: u64,
    /// Usage pages served with status 200 (malformed ones included).
    pub usage_pages_served: u64,
    /// Usage rows in those pages (repeated rows included).
    pub usage_rows_served: u64,
    /// Most usage requests being answered at the same moment (delays and faults included).
    pub usage_in_flight_peak: u64,
}

/// Live counters behind [`SimStats`].
#[derive(Default)]
pub(crate) struct StatCounters {
    metadata: AtomicU64,
    openid: AtomicU64,
    token: AtomicU64,
    usage: AtomicU64,
    subscriptions: AtomicU64,
    other: AtomicU64,
    pub tokens_issued: AtomicU64,
    pub rejected: AtomicU64,
    pub faults_served: AtomicU64,
    pub pages: AtomicU64,
    pub rows: AtomicU64,
    usage_in_flight: AtomicU64,
    usage_in_flight_peak: AtomicU64,
}

impl StatCounters {
    pub fn count_request(&self, kind: RequestKind) {
        let counter = match kind {
            RequestKind::Metadata => &self.metadata,
            RequestKind::OpenId => &self.openid,
            RequestKind::Token => &self.token,
            RequestKind::Usage => &self.usage,
            RequestKind::Subscriptions => &self.subscriptions,
            RequestKind::Other | RequestKind::Any => &self.other,
        };
        bump(counter);
    }

    pub fn snapshot(&self) -> SimStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SimStats {
            metadata_requests: get(&self.metadata),
            openid_requests: get(&self.openid),
            token_requests: get(&self.token),
            usage_requests: get(&self.usage),
            subscription_list_requests: get(&self.subscriptions),
            other_requests: get(&self.other),
            tokens_issued: get(&self.tokens_issued),
            rejected_requests: get(&self.rejected),
            faults_served: get(&self.faults_served),
            usage_pages_served: get(&self.pages),
            usage_rows_served: get(&self.rows),
            usage_in_flight_peak: get(&self.usage_in_flight_peak),
        }
    }

    /// Counts a usage request in flight until the guard drops (answered, or the connection gone).
    pub fn usage_in_flight(&self) -> InFlight<'_> {
        let now = self.usage_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.usage_in_flight_peak.fetch_max(now, Ordering::SeqCst);
        InFlight(&self.usage_in_flight)
    }
}

/// One usage request in flight (see [`StatCounters::usage_in_flight`]).
pub(crate) struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_consumed_in_order_and_by_kind() {
        let mut queue = FaultQueue::default();
        queue.push(Fault::Status503 { kind: RequestKind::Usage, count: 2 });
        queue.push(Fault::ConnectionReset { kind: RequestKind::Any, count: 1 });
        assert!(matches!(queue.take_for_request(RequestKind::Token), Some(FaultAction::ConnectionReset)));
        assert!(queue.take_for_request(RequestKind::Token).is_none());
        assert!(matches!(queue.take_for_request(RequestKind::Usage), Some(FaultAction::Status503)));
        assert!(matches!(queue.take_for_request(RequestKind::Usage), Some(FaultAction::Status503)));
        assert!(queue.take_for_request(RequestKind::Usage).is_none());
    }

    #[test]
    fn paths_are_classified() {
        assert_eq!(RequestKind::of_path("/metadata/endpoints"), RequestKind::Metadata);
        assert_eq!(RequestKind::of_path("/adfs/.well-known/openid-configuration"), RequestKind::OpenId);
        assert_eq!(RequestKind::of_path("/aad/x/oauth2/token"), RequestKind::Token);
        assert_eq!(
            RequestKind::of_path(
                "/subscriptions/a/providers/microsoft.commerce.admin/subscriberUsageAggregates"
            ),
            RequestKind::Usage
        );
        assert_eq!(RequestKind::of_path("/nope"), RequestKind::Other);
    }
}
