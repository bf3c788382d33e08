//! A connected stamp: pulls reported windows page by page, handing each page's rows on before the
//! next page is asked for, so a pull never holds more than one page.
//!
//! Per window, depending on the stamp's [`UsageQueryMode`]:
//! - all tenants: one `nextLink` chain of `subscriberUsageAggregates`;
//! - per subscriber: the tenant subscription list (fetched again for every window, so subscriptions
//!   created meanwhile are included), then one chain per `subscriberId`, up to
//!   `subscriber_concurrency` chains at once (a large stamp answers each query in about a second, so
//!   one after another cannot keep up; the bound keeps one stamp from being flooded). A subscription
//!   the stamp answers `SubscriberIdIsNotDirectTenant` for (a reseller's tenant) is skipped:
//!   all-tenants mode does not report it either. The first other error ends the window's pull and
//!   cancels the chains still running.
//!
//! `nextLink` is followed verbatim (parsed as it is, never rebuilt or re-encoded). It must point at the
//! admin ARM endpoint's own origin, because our bearer token goes with it.
//!
//! A window's pull is bounded ([`PullLimits`]): a `nextLink` that leads back to any page already read
//! in its chain (a cycle of any length), more pages, rows or body bytes in the window than the
//! limits (counted over all of the window's chains together, parallel or not), or one page body over
//! its cap each end the pull with a [`LimitExceeded`] error. The caller
//! then commits nothing of the window; the rows already handed on die with its buffer.
//!
//! A 401 means the token was revoked or expired early: the cached token is dropped and the request
//! tried once more with a fresh one. A second 401, or a 403, is final.

use crate::http::{StampHttp, Unreadable};
use crate::token::TokenClient;
use crate::usage::{
    PageError, UsagePage, parse_subscription_page, parse_usage_page, subscriptions_url, usage_url,
};
use async_trait::async_trait;
use azs_core::StampId;
use azs_core::ports::{
    DiscoveredEndpoints, LimitExceeded, PageRows, PullError, PullLimits, PullStage, PullSummary, StampSession,
};
use azs_core::stamp::UsageQueryMode;
use azs_core::window::ReportedWindow;
use futures::StreamExt;
use reqwest::Url;
use std::collections::HashSet;
use std::sync::Mutex;
use tracing::{Instrument, debug, info, info_span, warn};

/// An open session with one stamp (discovery done, a token at hand).
pub struct AzureStackSession {
    pub(crate) stamp_id: StampId,
    pub(crate) admin_arm_endpoint: String,
    pub(crate) admin_subscription_id: String,
    pub(crate) query_mode: UsageQueryMode,
    pub(crate) http: StampHttp,
    pub(crate) endpoints: DiscoveredEndpoints,
    pub(crate) tokens: TokenClient,
    pub(crate) limits: PullLimits,
    /// Most `subscriberId` chains of one window in flight at once (per-subscriber mode); at least 1.
    pub(crate) subscriber_concurrency: usize,
}

/// Where a window's chains hand their pages: the caller's buffer, the window's counts and its limits,
/// shared by chains that run at once. Locked only between awaits, never across one.
struct WindowSink<'a> {
    on_page: &'a mut (dyn for<'p> FnMut(PageRows<'p>) + Send),
    summary: PullSummary,
    tally: WindowTally,
}

impl WindowSink<'_> {
    /// Counts a page against the window's limits (its quarantined entries are rows too) and hands its
    /// rows on, with the page's text for the verbatim JSON of any row that is quarantined.
    fn page(&mut self, page: UsagePage, body: &[u8]) -> Result<(), PullError> {
        let entries = page.rows.len() + page.unreadable.len();
        self.tally.page(entries, body.len())?;
        self.summary.pages += 1;
        self.summary.rows += entries as u64;
        debug!(page = self.summary.pages, rows = entries, "page");
        if entries > 0 {
            let UsagePage { rows, unreadable, unreadable_entries, next_link } = page;
            let index = UsagePage { rows: Vec::new(), unreadable: Vec::new(), unreadable_entries, next_link };
            (self.on_page)(PageRows { rows, unreadable, verbatim: &|row| index.verbatim_row(body, row) });
        }
        Ok(())
    }
}

fn lock<'m, 'a>(sink: &'m Mutex<WindowSink<'a>>) -> std::sync::MutexGuard<'m, WindowSink<'a>> {
    sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What one window's pull has taken so far, against its limits.
struct WindowTally {
    limits: PullLimits,
    pages: u64,
    rows: u64,
    bytes: u64,
}

impl WindowTally {
    fn new(limits: PullLimits) -> Self {
        Self { limits, pages: 0, rows: 0, bytes: 0 }
    }

    /// Counts one page; an error once the window is over a limit.
    fn page(&mut self, rows: usize, bytes: usize) -> Result<(), PullError> {
        self.pages += 1;
        self.rows += rows as u64;
        self.bytes += bytes as u64;
        let l = self.limits;
        let over = if self.pages > l.max_pages {
            Some(LimitExceeded::Pages { limit: l.max_pages })
        } else if self.rows > l.max_rows {
            Some(LimitExceeded::Rows { limit: l.max_rows })
        } else if self.bytes > l.max_bytes {
            Some(LimitExceeded::Bytes { limit: l.max_bytes })
        } else {
            None
        };
        over.map_or(Ok(()), |limit| Err(PullError::limit(limit)))
    }
}

/// The pages one `nextLink` chain has visited, so that a link back to any of them (a cycle of any
/// length) is refused. Bounded by the page limit.
#[derive(Default)]
struct VisitedPages(HashSet<String>);

impl VisitedPages {
    fn visit(&mut self, url: &Url) -> Result<(), PullError> {
        if self.0.insert(url.as_str().to_owned()) {
            Ok(())
        } else {
            Err(PullError::limit(LimitExceeded::NextLinkCycle { pages: self.0.len() as u64 }))
        }
    }
}

#[async_trait]
impl StampSession for AzureStackSession {
    fn endpoints(&self) -> &DiscoveredEndpoints {
        &self.endpoints
    }

    async fn pull_pages(
        &self,
        window: ReportedWindow,
        also_subscribers: &[String],
        on_page: &mut (dyn for<'p> FnMut(PageRows<'p>) + Send),
    ) -> Result<PullSummary, PullError> {
        self.pull(window, also_subscribers, Subscribers::All, on_page).await
    }

    /// In per-subscriber mode the tenant list and one round of subscribers (as many as are asked at
    /// once): a stamp with 2,000 tenant subscriptions at 200 ms per query would need 50 s at the
    /// default concurrency to be asked whole, twice the connection test's budget.
    async fn probe(&self, window: ReportedWindow) -> Result<PullSummary, PullError> {
        self.pull(window, &[], Subscribers::FirstRound, &mut |_| {}).await
    }
}

/// Which of a per-subscriber stamp's subscriptions a pull asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subscribers {
    All,
    /// The first `subscriber_concurrency` of the list: one round of queries (a connection test).
    FirstRound,
}

impl AzureStackSession {
    async fn pull(
        &self,
        window: ReportedWindow,
        also_subscribers: &[String],
        asked: Subscribers,
        on_page: &mut (dyn for<'p> FnMut(PageRows<'p>) + Send),
    ) -> Result<PullSummary, PullError> {
        let span = info_span!("pull", stamp_id = %self.stamp_id, window = %window, mode = ?self.query_mode);
        async {
            let mut retries = 0;
            let subscribers = match self.query_mode {
                UsageQueryMode::AllTenants => None,
                UsageQueryMode::PerSubscriber => {
                    match self.subscribers_including(also_subscribers, &mut retries).await {
                        Ok(mut subscribers) => {
                            if asked == Subscribers::FirstRound {
                                subscribers.truncate(self.subscriber_concurrency.max(1));
                            }
                            Some(subscribers)
                        }
                        // The tenant list (Microsoft.Subscriptions.Admin) is not part of the usage
                        // API: a stamp or gateway without it still serves every tenant's usage in one
                        // chain, the same rows by the same keys.
                        Err(e) if matches!(e.http_status, Some(400 | 404)) => {
                            warn!(error = %e.message, "no tenant subscription list; pulling all tenants at once");
                            None
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            let sink = Mutex::new(WindowSink {
                on_page,
                summary: PullSummary { retries, ..PullSummary::default() },
                tally: WindowTally::new(self.limits),
            });
            match subscribers {
                None => self.pull_chain(window, None, &sink).await?,
                Some(subscribers) => self.pull_subscribers(window, &subscribers, &sink).await?,
            }
            let summary = sink.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner()).summary;
            info!(pages = summary.pages, rows = summary.rows, retries = summary.retries, "window pulled");
            Ok(summary)
        }
        .instrument(span)
        .await
    }

    /// The stamp's tenant subscriptions, with those seen recently that it no longer lists: a deleted
    /// subscription is gone from the list, but its last hours are still reported.
    async fn subscribers_including(
        &self,
        also: &[String],
        retries: &mut u64,
    ) -> Result<Vec<String>, PullError> {
        let mut subscribers = self.tenant_subscriptions(retries).await?;
        let listed: HashSet<String> = subscribers.iter().map(|s| s.to_ascii_lowercase()).collect();
        let missing: Vec<&String> =
            also.iter().filter(|s| !listed.contains(&s.to_ascii_lowercase())).collect();
        if !missing.is_empty() {
            debug!(count = missing.len(), "also asking for subscriptions no longer listed");
        }
        subscribers.extend(missing.into_iter().cloned());
        Ok(subscribers)
    }

    /// One chain per subscriber, at most `subscriber_concurrency` at once; the first error other than
    /// "not a direct tenant" ends the pull (dropping the stream cancels the chains in flight).
    async fn pull_subscribers(
        &self,
        window: ReportedWindow,
        subscribers: &[String],
        sink: &Mutex<WindowSink<'_>>,
    ) -> Result<(), PullError> {
        // By index: a closure over `&String` items trips the compiler's higher-ranked Send check.
        let mut chains = futures::stream::iter(0..subscribers.len())
            .map(|i| async move {
                let subscriber = subscribers[i].as_str();
                match self.pull_chain(window, Some(subscriber), sink).await {
                    Err(e) if e.upstream_code.as_deref() == Some("SubscriberIdIsNotDirectTenant") => {
                        debug!(subscriber, "not a direct tenant of the provider; skipped");
                        Ok(())
                    }
                    other => other,
                }
            })
            .buffer_unordered(self.subscriber_concurrency.max(1));
        while let Some(done) = chains.next().await {
            done?;
        }
        Ok(())
    }

    /// Follows one `nextLink` chain to its end, handing each page's rows to the sink as it arrives.
    async fn pull_chain(
        &self,
        window: ReportedWindow,
        subscriber: Option<&str>,
        sink: &Mutex<WindowSink<'_>>,
    ) -> Result<(), PullError> {
        let first = usage_url(&self.admin_arm_endpoint, &self.admin_subscription_id, window, subscriber)
            .map_err(|e| configuration(format!("adminArmEndpoint does not make a usage URL: {e}")))?;
        let mut next = Some(first);
        let mut body = Vec::new();
        let mut visited = VisitedPages::default();
        let mut retries = 0;
        let result = async {
            while let Some(url) = next.take() {
                visited.visit(&url)?;
                let mut page = self.get(&url, "usage page", read_usage_page, &mut retries, &mut body).await?;
                let next_link = page.next_link.take();
                lock(sink).page(page, &body)?;
                if let Some(link) = next_link {
                    next = Some(self.next_link(&url, &link)?);
                }
            }
            Ok(())
        }
        .await;
        lock(sink).summary.retries += retries;
        result
    }

    /// Every tenant subscription of the stamp, following the list's own `nextLink`s.
    pub(crate) async fn tenant_subscriptions(&self, retries: &mut u64) -> Result<Vec<String>, PullError> {
        let first = subscriptions_url(&self.admin_arm_endpoint, &self.admin_subscription_id)
            .map_err(|e| configuration(format!("adminArmEndpoint does not make a subscriptions URL: {e}")))?;
        let mut ids = Vec::new();
        let mut next = Some(first);
        let mut body = Vec::new();
        // The list is bounded like a window's pull: its own pages against the window's limits.
        let mut tally = WindowTally::new(self.limits);
        let mut visited = VisitedPages::default();
        while let Some(url) = next.take() {
            visited.visit(&url)?;
            let page =
                self.get(&url, "tenant subscriptions", read_subscription_page, retries, &mut body).await?;
            tally.page(page.subscription_ids.len(), body.len())?;
            ids.extend(page.subscription_ids);
            if let Some(link) = page.next_link {
                next = Some(self.next_link(&url, &link)?);
            }
        }
        debug!(subscriptions = ids.len(), "tenant subscriptions listed");
        Ok(ids)
    }

    /// The stamp's `nextLink`: an absolute URL is followed as it is; a relative one (not documented,
    /// but what a proxy or another implementation may send) is resolved against the page it came from.
    fn next_link(&self, current: &Url, link: &str) -> Result<Url, PullError> {
        let url = current.join(link).map_err(|e| usage_error(format!("nextLink is not a URL ({e})")))?;
        let admin = Url::parse(&self.admin_arm_endpoint)
            .map_err(|e| configuration(format!("adminArmEndpoint is not a URL: {e}")))?;
        if url.origin() != admin.origin() {
            return Err(usage_error(format!(
                "nextLink points at {}, not at the admin ARM endpoint {}; the token is only sent to the stamp",
                url.origin().ascii_serialization(),
                admin.origin().ascii_serialization()
            )));
        }
        if &url == current {
            return Err(PullError::limit(LimitExceeded::NextLinkCycle { pages: 1 }));
        }
        Ok(url)
    }

    /// GETs `url` with the stamp's token, reading the answer into `body`; on a 401, once, with a fresh
    /// token.
    async fn get<T>(
        &self,
        url: &Url,
        what: &'static str,
        read: impl Fn(&[u8]) -> Result<T, Unreadable>,
        retries: &mut u64,
        body: &mut Vec<u8>,
    ) -> Result<T, PullError> {
        let mut refreshed = false;
        loop {
            let token = self.tokens.token(&self.endpoints, retries).await?;
            let bearer = token.access_token.expose();
            let answer = self
                .http
                .call_reusing(
                    PullStage::Usage,
                    what,
                    |client| client.get(url.clone()).bearer_auth(bearer),
                    &read,
                    retries,
                    body,
                )
                .await;
            match answer {
                Ok(value) => return Ok(value),
                Err(failure) if failure.status() == Some(401) && !refreshed => {
                    warn!(
                        call = what,
                        "the stamp refused the token (401); trying once more with a fresh one"
                    );
                    self.tokens.forget(&token.access_token).await;
                    refreshed = true;
                    *retries += 1;
                }
                Err(failure) => return Err(failure.into_pull_error(PullStage::Usage)),
            }
        }
    }
}

/// Pages that do not parse are asked for again: a gateway may have cut or garbled them.
fn read_usage_page(body: &[u8]) -> Result<crate::usage::UsagePage, Unreadable> {
    parse_usage_page(body).map_err(page_unreadable)
}

fn read_subscription_page(body: &[u8]) -> Result<crate::usage::SubscriptionPage, Unreadable> {
    parse_subscription_page(body).map_err(page_unreadable)
}

fn page_unreadable(e: PageError) -> Unreadable {
    Unreadable::retryable(e.to_string())
}

fn usage_error(message: String) -> PullError {
    PullError { stage: PullStage::Usage, http_status: None, upstream_code: None, message, transient: false }
}

pub(crate) fn configuration(message: String) -> PullError {
    PullError {
        stage: PullStage::Configuration,
        http_status: None,
        upstream_code: None,
        message,
        transient: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HttpSettings;
    use crate::token::ClientProof;
    use azs_core::Secret;
    use std::sync::Arc;

    fn session() -> AzureStackSession {
        let http = StampHttp::new(None, HttpSettings::default(), None).unwrap();
        AzureStackSession {
            stamp_id: StampId("s".into()),
            admin_arm_endpoint: "https://adminmanagement.local.azurestack.external".into(),
            admin_subscription_id: "0b9d6e1c-2f4e-4b8a-9c3d-1a2b3c4d5e6f".into(),
            query_mode: UsageQueryMode::AllTenants,
            http: http.clone(),
            endpoints: DiscoveredEndpoints {
                audience: "a".into(),
                login_endpoint: "https://l/adfs/".into(),
                is_adfs: true,
                token_endpoint: "https://l/adfs/oauth2/token".into(),
            },
            tokens: TokenClient::new(
                http,
                "app".into(),
                Arc::new(ClientProof::Secret(Secret::new("x"))),
                Default::default(),
                std::time::Duration::from_secs(300),
            ),
            limits: PullLimits::default(),
            subscriber_concurrency: 1,
        }
    }

    fn first() -> Url {
        Url::parse("https://adminmanagement.local.azurestack.external/subscriptions/x/page1").unwrap()
    }

    #[test]
    fn a_next_link_on_the_stamp_is_followed_as_sent() {
        let link = "https://adminmanagement.local.azurestack.external/subscriptions/x/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates?reportedStartTime=2026-11-25T13%3a00%3a00%2b00%3a00&continuationToken=eyJ%2fwYWdlIjoyfQ%3d%3d";
        assert_eq!(session().next_link(&first(), link).unwrap().as_str(), link);
    }

    #[test]
    fn a_next_link_to_another_host_never_gets_the_token() {
        for link in [
            "https://evil.example/subscriptions/x/page2",
            "http://adminmanagement.local.azurestack.external/subscriptions/x/page2",
            "https://adminmanagement.local.azurestack.external:8443/subscriptions/x/page2",
        ] {
            let e = session().next_link(&first(), link).unwrap_err();
            assert_eq!(e.stage, PullStage::Usage);
            assert!(!e.transient, "{link}");
        }
    }

    #[test]
    fn a_next_link_back_to_the_same_page_is_refused() {
        assert_eq!(session().next_link(&first(), first().as_str()).unwrap_err().stage, PullStage::Limit);
    }

    #[test]
    fn a_chain_that_returns_to_any_earlier_page_is_a_cycle() {
        let mut visited = VisitedPages::default();
        let page = |n: u32| Url::parse(&format!("https://h/p?continuationToken={n}")).unwrap();
        for n in 1..=3 {
            visited.visit(&page(n)).unwrap();
        }
        let e = visited.visit(&page(1)).unwrap_err();
        assert_eq!(e.stage, PullStage::Limit);
        assert!(e.message.contains("leads back to a page already read (after 3 pages)"), "{}", e.message);
    }

    #[test]
    fn a_window_over_any_limit_is_refused_naming_the_limit() {
        let limits = PullLimits { max_pages: 3, max_rows: 100, max_bytes: 1000, max_page_bytes: 10 };
        let mut tally = WindowTally::new(limits);
        tally.page(50, 100).unwrap();
        tally.page(50, 100).unwrap();
        let e = tally.page(1, 1).unwrap_err();
        assert!(e.message.contains("more than 100 rows"), "{}", e.message);
        let mut tally = WindowTally::new(limits);
        for _ in 0..3 {
            tally.page(0, 1).unwrap();
        }
        assert!(tally.page(0, 1).unwrap_err().message.contains("more than 3 pages"));
        let mut tally = WindowTally::new(limits);
        assert!(tally.page(0, 1001).unwrap_err().message.contains("more than 1000 bytes"));
    }
}
