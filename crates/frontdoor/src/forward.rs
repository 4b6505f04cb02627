//! Forwarding one client request: route, select, send, retry, answer.
//!
//! The request to the origin carries `X-Forwarded-For` (appended), `X-Forwarded-Host`,
//! `X-Forwarded-Proto`, `Via`, the hop counter `X-Geoha-Hops` and the request reference
//! `X-Geoha-Ref` (echoed to the client); hop-by-hop headers are stripped both ways.
//! Bodies are streamed both ways.
//!
//! A try that fails before the origin could have acted on the request (connect failure,
//! or the connection closed before response headers while the body is still untouched
//! and the request is idempotent or has an unsent body) is retried on another origin,
//! preferring another zone and region, within `retry.max_attempts`, the retry budget
//! and the group's `origin_response_timeout`. Per-try timeouts (`try_timeout`) retry
//! idempotent requests away from an origin that accepted but does not answer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::affinity;
use crate::body::{full, BodyEnd, OriginBody, OutBody, ReplayableBody, ServedBody};
use crate::error::ForwardError;
use crate::metrics::FailureKind;
use crate::origin::OriginRuntime;
use crate::pool::{ConnectError, Sender};
use crate::select::Tier;
use crate::Frontdoor;

/// The request reference header, sent to the origin and echoed to the client.
pub const REF_HEADER: &str = "x-geoha-ref";
/// The hop counter header (loop protection).
pub const HOPS_HEADER: &str = "x-geoha-hops";
/// A client can mark a non-idempotent request safe to retry with this header.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

// Header names parsed once: a `&str` name is parsed and hashed again on every use.
const REF: HeaderName = HeaderName::from_static(REF_HEADER);
const HOPS: HeaderName = HeaderName::from_static(HOPS_HEADER);
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Who sent a request; one per client connection.
#[derive(Debug, Clone)]
pub(crate) struct ClientInfo {
    pub(crate) tls: bool,
    /// The peer's IP as `X-Forwarded-For` names it, formatted once per connection.
    forwarded_for: HeaderValue,
}

impl ClientInfo {
    pub(crate) fn new(peer: SocketAddr, tls: bool) -> Self {
        let forwarded_for = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        ClientInfo { tls, forwarded_for }
    }
}

/// A request's reference: 16 hex digits, in `X-Geoha-Ref` both ways and in error pages.
#[derive(Debug, Clone)]
struct RequestRef(HeaderValue);

impl RequestRef {
    fn new() -> Self {
        use rand::Rng;
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = rand::rng().random::<u64>();
        let mut digits = [0u8; 16];
        for (i, d) in digits.iter_mut().enumerate() {
            *d = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
        }
        // Hex digits are always a valid header value.
        let value = HeaderValue::from_maybe_shared(bytes::Bytes::copy_from_slice(&digits))
            .unwrap_or_else(|_| HeaderValue::from_static("0000000000000000"));
        RequestRef(value)
    }

    fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or("?")
    }
}

impl std::fmt::Display for RequestRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Answers one client request; never fails (errors become responses here).
pub(crate) async fn handle(
    fd: Arc<Frontdoor>,
    client: Arc<ClientInfo>,
    req: Request<Incoming>,
) -> Response<ServedBody> {
    let reference = RequestRef::new();
    let mut resp = match forward(&fd, &client, req, &reference).await {
        Ok(resp) => resp,
        Err(err) => {
            tracing::debug!(%err, %reference, "request failed");
            err.into_response(reference.as_str())
        }
    };
    resp.headers_mut().insert(REF, reference.0);
    fd.stats.response(resp.status());
    resp
}

async fn forward(
    fd: &Frontdoor,
    client: &ClientInfo,
    mut req: Request<Incoming>,
    reference: &RequestRef,
) -> Result<Response<ServedBody>, ForwardError> {
    let routing = fd.routing.load_full();
    let limits = &routing.cfg.limits;

    let hops = match req.headers().get(HOPS) {
        None => 0,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .ok_or(ForwardError::BadRequest("X-Geoha-Hops is not a number"))?,
    };
    if hops >= u32::from(limits.max_hops) {
        return Err(ForwardError::LoopDetected { hops });
    }
    if let Some(limit) = limits.max_body_bytes {
        if let Some(len) = content_length(req.headers())? {
            if len > limit {
                return Err(ForwardError::BodyTooLarge { limit });
            }
        }
    }
    let host = request_host(&req).ok_or(ForwardError::BadRequest("no Host header"))?;
    let group_index = routing
        .routes
        .find(host.to_str().unwrap_or_default(), req.uri().path())
        .ok_or(ForwardError::NoRoute)?;
    let group = Arc::clone(&routing.groups[group_index]);

    let upgrade = is_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let idempotent = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) || parts.headers.contains_key(&IDEMPOTENCY_KEY);
    let pinned = if group.cfg.session_affinity {
        affinity::from_request(&parts.headers).and_then(|id| group.by_affinity(id))
    } else {
        None
    };
    let headers = origin_headers(
        std::mem::take(&mut parts.headers),
        parts.version,
        client,
        &host,
        hops + 1,
        reference,
        upgrade,
    );
    // Origin form (`/path?query`); the PathAndQuery clone shares its bytes.
    let mut target = http::uri::Parts::default();
    target.path_and_query = Some(
        parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    let uri =
        Uri::from_parts(target).map_err(|_| ForwardError::BadRequest("bad request target"))?;
    let body = ReplayableBody::new(body, limits.max_body_bytes);

    fd.budget.load().deposit();
    let started = Instant::now();
    let deadline = started + group.cfg.origin_response_timeout;
    let max_attempts = routing.cfg.retry.max_attempts.max(1) as usize;
    let mut tried: Vec<usize> = Vec::new();
    let mut failed: Vec<usize> = Vec::new();
    let mut last_err: Option<ForwardError> = None;
    // A 5xx answer kept while another origin gets the request (`retry.on_5xx`): the
    // client gets it if nothing better comes.
    let mut held_5xx: Option<Response<ServedBody>> = None;

    while tried.len() < max_attempts {
        let now = Instant::now();
        let cands = group.candidates(now, &tried, &failed);
        let pick = match pinned {
            // The pinned origin while it is healthy, enabled and not ejected.
            Some(p)
                if tried.is_empty() && {
                    let c = &cands[p];
                    c.enabled && c.healthy && !c.ejected
                } =>
            {
                Some((p, Tier::Healthy))
            }
            _ => group.selector.pick(&cands, &mut rand::rng()),
        };
        let Some((mut index, _tier)) = pick else {
            break;
        };
        tried.push(index);
        let mut origin = &group.origins[index];

        let remaining = deadline.saturating_duration_since(now);
        if remaining.is_zero() {
            last_err = Some(ForwardError::OriginTimeout {
                origin: origin.cfg.name.clone(),
                after: group.cfg.origin_response_timeout,
            });
            break;
        }
        // A per-try timeout only where a retry could follow: an idempotent request
        // whose body can still be sent again, another origin to go to, tries left.
        let alternative = cands
            .iter()
            .enumerate()
            .any(|(i, c)| i != index && c.enabled && !c.tried);
        let try_timeout = match group.try_timeout(index) {
            Some(t)
                if idempotent
                    && body.is_untouched()
                    && alternative
                    && tried.len() < max_attempts =>
            {
                t.min(remaining)
            }
            _ => remaining,
        };

        let host_for = |o: &crate::origin::GroupOrigin| match o.cfg.host_header.as_deref() {
            Some(h) => {
                HeaderValue::from_str(h).map_err(|_| ForwardError::BadRequest("bad Host header"))
            }
            None => Ok(host.clone()),
        };
        let host_value = host_for(origin)?;
        let request_to = |host_value: &HeaderValue| {
            let mut out = Request::new(body.for_try());
            *out.method_mut() = parts.method.clone();
            *out.uri_mut() = uri.clone();
            *out.version_mut() = Version::HTTP_11;
            *out.headers_mut() = headers.clone();
            out.headers_mut().insert(header::HOST, host_value.clone());
            out
        };
        let make_request = || request_to(&host_value);
        // A reused keep-alive connection the origin closed meanwhile is not the origin's
        // failure: such a try may go again on a fresh connection when nothing of the
        // request could have been acted on.
        let resendable = || body.is_untouched() && (idempotent || !body.is_empty());

        let mut rt = Arc::clone(&origin.rt);
        rt.stats.requests.fetch_add(1, Ordering::Relaxed);
        rt.stats.recent.add(now);
        let mut in_flight = InFlight::start(&rt);
        let mut try_started = Instant::now();
        let sent = AtomicBool::new(false);
        // Hedging: only the first try of an idempotent request without a body, when
        // another origin could take the copy and the delay ends before the try timeout.
        let hedge_delay =
            if idempotent && !upgrade && body.is_empty() && tried.len() == 1 && alternative {
                group.hedge_delay().filter(|d| *d < try_timeout)
            } else {
                None
            };
        let mut hedge_host = None;
        let mut winner = None;
        let (outcome, retry_granted) = {
            let attempt = send_try(
                &rt,
                &make_request,
                &resendable,
                group.cfg.connect_timeout,
                upgrade,
                &sent,
            );
            tokio::pin!(attempt);
            let mut early = None;
            let mut try_timeout = try_timeout;
            let mut remaining = remaining;
            if let Some(delay) = hedge_delay {
                match tokio::time::timeout(delay, &mut attempt).await {
                    Ok(r) => early = Some(r),
                    Err(_) => {
                        try_timeout -= delay;
                        remaining = remaining.saturating_sub(delay);
                        // The copy goes to the farthest untried origin, paid by the budget.
                        let cands = group.candidates(Instant::now(), &tried, &[index]);
                        let second = group.selector.pick(&cands, &mut rand::rng());
                        if let Some((second, _)) = second {
                            if fd.budget.load().try_withdraw() {
                                hedge_host = Some((second, host_for(&group.origins[second])?));
                            }
                        }
                    }
                }
            }
            if let Some(r) = early {
                (r, false)
            } else if let Some((second, second_host)) = &hedge_host {
                let second = *second;
                tried.push(second);
                fd.stats.hedges.fetch_add(1, Ordering::Relaxed);
                let rt2 = Arc::clone(&group.origins[second].rt);
                rt2.stats.requests.fetch_add(1, Ordering::Relaxed);
                rt2.stats.recent.add(Instant::now());
                let in_flight2 = InFlight::start(&rt2);
                let hedge_started = Instant::now();
                let sent2 = AtomicBool::new(false);
                let make_copy = || request_to(second_host);
                let copy = send_try(
                    &rt2,
                    &make_copy,
                    &resendable,
                    group.cfg.connect_timeout,
                    false,
                    &sent2,
                );
                tokio::pin!(copy);
                // First answer wins; a failed side leaves the other running; the loser
                // is dropped (its connection closes, which cancels it at the origin).
                let race = async {
                    let mut first_err = None;
                    let mut copy_err = None;
                    // A 5xx answer is held, not returned, while the other side may still
                    // answer well: a fast failing origin must not win the race against a
                    // slow healthy one. `true` marks the copy's answer.
                    let mut held = None;
                    loop {
                        let first_open = first_err.is_none() && !matches!(held, Some((false, _)));
                        let copy_open = copy_err.is_none() && !matches!(held, Some((true, _)));
                        if !first_open && !copy_open {
                            break;
                        }
                        tokio::select! {
                            r = &mut attempt, if first_open => match r {
                                Ok(ok) if copy_open && ok.0.status().is_server_error() => {
                                    held = Some((false, ok));
                                }
                                Ok(ok) => return (false, Ok(ok), copy_err, held.is_some()),
                                Err(e) => first_err = Some(e),
                            },
                            r = &mut copy, if copy_open => match r {
                                Ok(ok) if first_open && ok.0.status().is_server_error() => {
                                    held = Some((true, ok));
                                }
                                Ok(ok) => return (true, Ok(ok), first_err, held.is_some()),
                                Err(e) => copy_err = Some(e),
                            },
                        }
                    }
                    // Neither side answered well: a held 5xx beats an error.
                    match held {
                        Some((true, ok)) => (true, Ok(ok), first_err, false),
                        Some((false, ok)) => (false, Ok(ok), copy_err, false),
                        None => {
                            let first = first_err.map_or_else(|| Err(TryError::ClientBody), Err);
                            (false, first, copy_err, false)
                        }
                    }
                };
                tokio::pin!(race);
                // Both hanging (two frozen origins) is bounded like one try.
                let (copy_won, result, other_err, loser_5xx, granted) =
                    match wait_try(&mut race, try_timeout, remaining, fd).await {
                        Waited::Done((copy_won, result, other_err, loser_5xx)) => {
                            (copy_won, result, other_err, loser_5xx, false)
                        }
                        Waited::Abandoned => {
                            group.record_failure(second, FailureKind::TryTimeout, Instant::now());
                            failed.push(second);
                            let err = timed_out(&sent, rt.address, try_timeout);
                            (false, Err(err), None, false, true)
                        }
                        Waited::Expired => {
                            let err = timed_out(&sent, rt.address, remaining);
                            (false, Err(err), None, false, false)
                        }
                    };
                if let Some(err) = other_err {
                    // The side that lost by failing: its failure counts like any other.
                    let failed_side = if copy_won { index } else { second };
                    if let Some(kind) = err.failure_kind() {
                        group.record_failure(failed_side, kind, Instant::now());
                        failed.push(failed_side);
                    }
                } else if loser_5xx {
                    // The side that answered 5xx and lost to a good answer.
                    let loser = if copy_won { index } else { second };
                    group.record_failure(loser, FailureKind::Status5xx, Instant::now());
                    failed.push(loser);
                } else if result.is_ok() && copy_won {
                    // The first try never answered before the copy: a latency outlier.
                    group.record_failure(index, FailureKind::HedgeLost, Instant::now());
                }
                if copy_won {
                    fd.stats.hedges_won.fetch_add(1, Ordering::Relaxed);
                    winner = Some((second, Arc::clone(&rt2), in_flight2, hedge_started));
                }
                (result, granted)
            } else {
                match wait_try(&mut attempt, try_timeout, remaining, fd).await {
                    Waited::Done(r) => (r, false),
                    Waited::Abandoned => (Err(timed_out(&sent, rt.address, try_timeout)), true),
                    Waited::Expired => (Err(timed_out(&sent, rt.address, remaining)), false),
                }
            }
        };
        if let Some((second, rt2, in_flight2, hedge_started)) = winner {
            index = second;
            origin = &group.origins[second];
            rt = rt2;
            in_flight = in_flight2;
            try_started = hedge_started;
        }
        match outcome {
            Ok((mut resp, sender)) => {
                let took = try_started.elapsed();
                rt.stats.latency.observe(took);
                rt.stats.recent_latency.observe(took);
                let is_5xx = resp.status().is_server_error();
                if is_5xx {
                    group.record_failure(index, FailureKind::Status5xx, Instant::now());
                } else {
                    group.record_success(index);
                }
                // Another origin may answer well: an idempotent request with no body to
                // resend, tries left, an untried origin, and a retry from the budget.
                let retry_5xx = is_5xx
                    && routing.cfg.retry.on_5xx
                    && idempotent
                    && body.is_empty()
                    && !upgrade
                    && alternative
                    && tried.len() < max_attempts
                    && withdraw_retry(fd, reference);
                let set_cookie = group.cfg.session_affinity && pinned != Some(index);
                if upgrade && resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    let origin_upgrade = hyper::upgrade::on(&mut resp);
                    if let Some(client_upgrade) = client_upgrade {
                        tokio::spawn(tunnel(client_upgrade, origin_upgrade, in_flight));
                    }
                    let (mut rparts, _) = resp.into_parts();
                    strip_hop_by_hop(&mut rparts.headers);
                    rparts
                        .headers
                        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                    if let Some(proto) = headers.get(header::UPGRADE) {
                        rparts.headers.insert(header::UPGRADE, proto.clone());
                    }
                    return Ok(Response::from_parts(rparts, full(bytes::Bytes::new())));
                }
                let (mut rparts, incoming) = resp.into_parts();
                strip_hop_by_hop(&mut rparts.headers);
                append_via(&mut rparts.headers, rparts.version);
                rparts.version = Version::HTTP_11;
                if set_cookie {
                    rparts.headers.append(
                        header::SET_COOKIE,
                        affinity::set_cookie(&origin.affinity_id),
                    );
                }
                let end = TryEnd {
                    sender: if upgrade { None } else { sender },
                    origin: rt,
                    _in_flight: in_flight,
                };
                let body = OriginBody::new(incoming, Box::new(end)).boxed_unsync();
                let response = Response::from_parts(rparts, body);
                if retry_5xx {
                    tracing::debug!(%reference, origin = %origin.cfg.name, "5xx: retrying elsewhere");
                    fd.stats.retries.fetch_add(1, Ordering::Relaxed);
                    failed.push(index);
                    held_5xx = Some(response);
                    continue;
                }
                return Ok(response);
            }
            Err(err) => {
                drop(in_flight);
                if body.over_limit() {
                    let limit = routing.cfg.limits.max_body_bytes.unwrap_or(0);
                    return Err(ForwardError::BodyTooLarge { limit });
                }
                let name = origin.cfg.name.clone();
                let (kind, error, may_retry) = match err {
                    TryError::ClientBody => return Err(ForwardError::ClientBody),
                    TryError::Connect(e) => {
                        tracing::debug!(origin = %name, err = %e, "connect failed");
                        let kind = match e {
                            ConnectError::Timeout { .. } => FailureKind::ConnectTimeout,
                            _ => FailureKind::Connect,
                        };
                        (
                            kind,
                            ForwardError::Connect { origin: name },
                            body.is_untouched(),
                        )
                    }
                    TryError::Closed(e) => {
                        tracing::debug!(origin = %name, err = %e, "closed before headers");
                        let retry = body.is_untouched() && (idempotent || !body.is_empty());
                        (
                            FailureKind::Closed,
                            ForwardError::Closed { origin: name },
                            retry,
                        )
                    }
                    TryError::Timeout { after } if retry_granted => {
                        let retry = body.is_untouched() && idempotent;
                        (
                            FailureKind::TryTimeout,
                            ForwardError::OriginTimeout {
                                origin: name,
                                after,
                            },
                            retry,
                        )
                    }
                    TryError::Timeout { .. } => (
                        FailureKind::Timeout,
                        ForwardError::OriginTimeout {
                            origin: name,
                            after: group.cfg.origin_response_timeout,
                        },
                        false,
                    ),
                };
                group.record_failure(index, kind, Instant::now());
                failed.push(index);
                last_err = Some(error);
                if !may_retry || tried.len() >= max_attempts {
                    break;
                }
                if !retry_granted && !withdraw_retry(fd, reference) {
                    break;
                }
                fd.stats.retries.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    // A real answer from an origin beats an error made up here.
    if let Some(response) = held_5xx {
        return Ok(response);
    }
    Err(last_err.unwrap_or_else(|| ForwardError::NoOrigin {
        group: group.cfg.name.clone(),
    }))
}

/// Takes a retry from the budget; a refusal is counted (and logged).
fn withdraw_retry(fd: &Frontdoor, reference: &RequestRef) -> bool {
    let granted = fd.budget.load().try_withdraw();
    if !granted {
        fd.stats.retries_denied.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%reference, "retry refused by the retry budget");
    }
    granted
}

/// How one try failed.
#[derive(Debug)]
enum TryError {
    /// Nothing was sent.
    Connect(ConnectError),
    /// Sent (at least partly), then the connection broke before response headers.
    Closed(hyper::Error),
    /// No response headers within `after`.
    Timeout { after: Duration },
    /// The client's body failed (not the origin's fault).
    ClientBody,
}

/// One try on one origin: a pooled connection if one is idle, else a new one. A pooled
/// connection found closed hands the request back (nothing sent) or, once sent, the
/// request goes again on the next connection if `resendable` says nothing of it could
/// have been acted on (the keep-alive race: the origin closed an idle connection just
/// as it was reused).
/// `sent` tells the caller's timeout whether anything went out (a timeout before that is
/// a connect timeout: nothing for the origin to act on).
async fn send_try(
    rt: &OriginRuntime,
    make_request: &(dyn Fn() -> Request<OutBody> + Sync),
    resendable: &(dyn Fn() -> bool + Sync),
    connect_timeout: Duration,
    upgrade: bool,
    sent: &AtomicBool,
) -> Result<(Response<Incoming>, Option<Sender>), TryError> {
    {
        let mut req = make_request();
        if !upgrade {
            // Bounded: each iteration removes one idle connection from the pool.
            while let Some(mut sender) = rt.pool.take_idle() {
                if sender.ready().await.is_err() {
                    continue;
                }
                sent.store(true, Ordering::Relaxed);
                match sender.try_send_request(req).await {
                    Ok(resp) => return Ok((resp, Some(sender))),
                    Err(mut e) => match e.take_message() {
                        Some(back) => {
                            // Closed while idle: nothing was sent, try the next one.
                            sent.store(false, Ordering::Relaxed);
                            req = back;
                        }
                        None if resendable() && !e.error().is_user() => {
                            tracing::debug!(origin = %rt.name, err = %e.error(),
                                "reused connection closed; sending again on another");
                            sent.store(false, Ordering::Relaxed);
                            req = make_request();
                        }
                        None => return Err(classify(e.into_error())),
                    },
                }
            }
        }
        let mut sender = if upgrade {
            rt.pool.connect_upgradable(connect_timeout).await
        } else {
            rt.pool.connect(connect_timeout).await
        }
        .map_err(TryError::Connect)?;
        sent.store(true, Ordering::Relaxed);
        match sender.try_send_request(req).await {
            Ok(resp) => Ok((resp, Some(sender))),
            Err(mut e) => match e.take_message() {
                // A brand-new connection that closed before sending: as good as refused.
                Some(_) => Err(TryError::Connect(ConnectError::Io {
                    addr: rt.address,
                    source: std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "closed before the request was sent",
                    ),
                })),
                None => Err(classify(e.into_error())),
            },
        }
    }
}

impl TryError {
    /// How this error counts against the origin (`None`: not the origin's fault).
    fn failure_kind(&self) -> Option<FailureKind> {
        match self {
            TryError::Connect(ConnectError::Timeout { .. }) => Some(FailureKind::ConnectTimeout),
            TryError::Connect(_) => Some(FailureKind::Connect),
            TryError::Closed(_) => Some(FailureKind::Closed),
            TryError::Timeout { .. } => Some(FailureKind::TryTimeout),
            TryError::ClientBody => None,
        }
    }
}

/// How the wait for a try (or a hedged race) ended.
enum Waited<T> {
    /// It finished.
    Done(T),
    /// No answer within the per-try timeout, and the retry budget granted a retry.
    Abandoned,
    /// No answer before the overall deadline.
    Expired,
}

/// Two stages: at the per-try timeout the wait is abandoned only if the retry budget
/// grants a retry; otherwise the try keeps its chance until the overall deadline.
async fn wait_try<F: std::future::Future + Unpin>(
    fut: &mut F,
    try_timeout: Duration,
    remaining: Duration,
    fd: &Frontdoor,
) -> Waited<F::Output> {
    match tokio::time::timeout(try_timeout.min(remaining), &mut *fut).await {
        Ok(r) => Waited::Done(r),
        Err(_) if try_timeout < remaining && fd.budget.load().try_withdraw() => Waited::Abandoned,
        Err(_) => match tokio::time::timeout(remaining.saturating_sub(try_timeout), fut).await {
            Ok(r) => Waited::Done(r),
            Err(_) => Waited::Expired,
        },
    }
}

/// The error for a try that got no response headers within `after`.
fn timed_out(sent: &AtomicBool, addr: SocketAddr, after: Duration) -> TryError {
    if sent.load(Ordering::Relaxed) {
        TryError::Timeout { after }
    } else {
        TryError::Connect(ConnectError::Timeout { addr, after })
    }
}

fn classify(err: hyper::Error) -> TryError {
    if err.is_user() {
        // Our request body (the client's) failed: over the limit or the client left.
        return TryError::ClientBody;
    }
    TryError::Closed(err)
}

/// Counts a try in flight until dropped.
struct InFlight(Arc<OriginRuntime>);

impl InFlight {
    fn start(rt: &Arc<OriginRuntime>) -> Self {
        rt.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(rt))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// End of an origin's response body: pool the connection, end the in-flight count.
struct TryEnd {
    sender: Option<Sender>,
    origin: Arc<OriginRuntime>,
    _in_flight: InFlight,
}

impl BodyEnd for TryEnd {
    fn finish(mut self: Box<Self>, complete: bool) {
        if let (true, Some(sender)) = (complete, self.sender.take()) {
            self.origin.pool.put(sender);
        }
    }
}

/// Copies bytes both ways after a `101 Switching Protocols`.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    origin: hyper::upgrade::OnUpgrade,
    in_flight: InFlight,
) {
    let _in_flight = in_flight;
    let (client, origin) = match tokio::try_join!(client, origin) {
        Ok(both) => both,
        Err(err) => {
            tracing::debug!(%err, "upgrade failed");
            return;
        }
    };
    let mut client = hyper_util::rt::TokioIo::new(client);
    let mut origin = hyper_util::rt::TokioIo::new(origin);
    if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut origin).await {
        tracing::debug!(%err, "upgraded connection ended with an error");
    }
}

fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ForwardError> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or(ForwardError::BadRequest("bad Content-Length")),
    }
}

/// The host the client asked for: the URI's authority (HTTP/2, absolute form) or `Host`
/// (visible ASCII only).
fn request_host(req: &Request<Incoming>) -> Option<HeaderValue> {
    if let Some(a) = req.uri().authority() {
        return HeaderValue::from_str(a.as_str()).ok();
    }
    req.headers()
        .get(header::HOST)
        .filter(|h| h.to_str().is_ok())
        .cloned()
}

/// `Connection: upgrade` plus `Upgrade` on HTTP/1.1.
fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && connection_tokens(req.headers()).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers: the fixed list and whatever `Connection` names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names costs less than nine removals.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.to_ascii_lowercase().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove(KEEP_ALIVE);
    headers.remove(PROXY_CONNECTION);
}

/// A header that `strip_hop_by_hop` always removes (those named by `Connection` go with
/// `Connection` itself).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        KEEP_ALIVE,
        PROXY_CONNECTION,
    ]
    .contains(name)
}

fn append_via(headers: &mut HeaderMap, version: Version) {
    let proto = match version {
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    };
    let value = match headers.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(prev) => HeaderValue::from_str(&format!("{prev}, {proto} geoha")).ok(),
        None => Some(HeaderValue::from_static(match version {
            Version::HTTP_10 => "1.0 geoha",
            Version::HTTP_2 => "2 geoha",
            Version::HTTP_3 => "3 geoha",
            _ => "1.1 geoha",
        })),
    };
    if let Some(v) = value {
        headers.insert(header::VIA, v);
    }
}

/// The headers sent to origins (without `Host`, set per origin).
fn origin_headers(
    mut h: HeaderMap,
    version: Version,
    client: &ClientInfo,
    host: &HeaderValue,
    hops: u32,
    reference: &RequestRef,
    upgrade: bool,
) -> HeaderMap {
    let upgrade_proto = if upgrade {
        h.get(header::UPGRADE).cloned()
    } else {
        None
    };
    strip_hop_by_hop(&mut h);
    h.remove(header::HOST);
    // Room for what is added here and the per-try `Host`: at most one growth.
    h.reserve(8);
    if let Some(proto) = upgrade_proto {
        h.insert(header::UPGRADE, proto);
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let previous: Vec<&str> = h
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let xff = if previous.is_empty() {
        Some(client.forwarded_for.clone())
    } else {
        let ip = client.forwarded_for.to_str().unwrap_or_default();
        HeaderValue::from_str(&format!("{}, {ip}", previous.join(", "))).ok()
    };
    if let Some(v) = xff {
        h.insert(X_FORWARDED_FOR, v);
    }
    h.insert(X_FORWARDED_HOST, host.clone());
    h.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if client.tls { "https" } else { "http" }),
    );
    append_via(&mut h, version);
    h.insert(HOPS, HeaderValue::from(hops));
    h.insert(REF, reference.0.clone());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_stripped_including_those_named_by_connection() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["accept"]);
    }

    #[test]
    fn request_refs_are_16_lowercase_hex_digits() {
        let a = RequestRef::new();
        let b = RequestRef::new();
        for r in [&a, &b] {
            assert_eq!(r.as_str().len(), 16, "{r}");
            assert!(
                r.as_str()
                    .bytes()
                    .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
                "{r}"
            );
        }
        assert_ne!(a.as_str(), b.as_str());
    }

    #[test]
    fn forwarded_headers_are_set_and_client_values_replaced() {
        let client = ClientInfo::new("10.1.2.3:4567".parse().unwrap(), true);
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a.example"));
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("192.0.2.1 "));
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("192.0.2.2"));
        h.insert(&X_FORWARDED_HOST, HeaderValue::from_static("spoofed"));
        let reference = RequestRef::new();
        let host = HeaderValue::from_static("a.example");
        let out = origin_headers(h, Version::HTTP_11, &client, &host, 3, &reference, false);
        assert_eq!(out[&X_FORWARDED_FOR], "192.0.2.1, 192.0.2.2, 10.1.2.3");
        assert_eq!(out[&X_FORWARDED_HOST], "a.example");
        assert_eq!(out[&X_FORWARDED_PROTO], "https");
        assert_eq!(out[&HOPS], "3");
        assert_eq!(out[&REF], reference.as_str());
        assert_eq!(out[header::VIA], "1.1 geoha");
        assert!(!out.contains_key(header::HOST));
        let plain = ClientInfo::new("[::1]:80".parse().unwrap(), false);
        let out = origin_headers(
            HeaderMap::new(),
            Version::HTTP_2,
            &plain,
            &host,
            1,
            &reference,
            false,
        );
        assert_eq!(out[&X_FORWARDED_FOR], "::1");
        assert_eq!(out[&X_FORWARDED_PROTO], "http");
        assert_eq!(out[header::VIA], "2 geoha");
    }

    #[test]
    fn via_is_appended() {
        let mut h = HeaderMap::new();
        append_via(&mut h, Version::HTTP_11);
        append_via(&mut h, Version::HTTP_2);
        assert_eq!(h[header::VIA], "1.1 geoha, 2 geoha");
    }
}
