//! Request handling: one function answers every Graph request, whether it arrived over HTTP or
//! inside a `$batch`, so both paths behave identically.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::Utc;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::config::BehaviourConfig;
use crate::config::EmulatorConfig;
use crate::state::{
    Column, Data, Item, List, Site, Tombstone, new_guid, stable_guid, template_columns,
};

/// A request after HTTP parsing (or unpacked from a batch).
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Percent-decoded path, e.g. `/v1.0/sites/contoso.sharepoint.com:/sites/x`.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// Lower-case header names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// A response before HTTP encoding.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
}

impl Response {
    pub(crate) fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), CONTENT_TYPE.into())],
            body: Some(body),
        }
    }

    fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: None,
        }
    }

    pub(crate) fn header(mut self, name: &str, value: String) -> Self {
        self.headers.push((name.to_owned(), value));
        self
    }
}

/// Characters escaped in query values of generated links.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'(')
    .remove(b')')
    .remove(b',')
    .remove(b'/')
    .remove(b'\'');

pub const CONTENT_TYPE: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

/// Graph's error body (§9).
pub fn graph_error(status: u16, code: &str, message: &str) -> Response {
    let request_id = new_guid();
    Response::json(
        status,
        json!({"error": {"code": code, "message": message, "innerError": {
            "date": Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
            "request-id": request_id,
            "client-request-id": request_id,
        }}}),
    )
}

/// Graph's error body with a more specific inner code (clients use the most detailed code
/// they understand).
pub fn graph_error_with_inner(status: u16, code: &str, message: &str, inner: &str) -> Response {
    let mut response = graph_error(status, code, message);
    if let Some(inner_error) = response
        .body
        .as_mut()
        .and_then(|b| b.pointer_mut("/error/innerError"))
        .and_then(Value::as_object_mut)
    {
        inner_error.insert("code".into(), Value::String(inner.to_owned()));
    }
    response
}

/// Counts of requests by kind and status, for tests and `GET /_emulator/counts`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestCounts {
    /// `"{kind} {status}"` → count, e.g. `"item.create 201"`.
    pub by_kind_and_status: std::collections::BTreeMap<String, u64>,
    /// HTTP requests that arrived while their app had been told to wait by a 429 or 503
    /// (`Retry-After` not honoured). A `$batch` counts once, however many requests it holds.
    pub before_retry_after: u64,
    /// Of those, the ones that repeated a request answered 429/503 before the end of its
    /// `Retry-After`: certain violations (the client is retrying, so it had read the answer),
    /// where the others are judged by timing.
    pub retried_before_retry_after: u64,
    pub total: u64,
}

impl RequestCounts {
    /// The count for one kind and status.
    pub fn get(&self, kind: &str, status: u16) -> u64 {
        self.by_kind_and_status
            .get(&format!("{kind} {status}"))
            .copied()
            .unwrap_or(0)
    }

    /// All requests of one kind, any status.
    pub fn kind(&self, kind: &str) -> u64 {
        self.by_kind_and_status
            .iter()
            .filter(|(k, _)| k.split(' ').next() == Some(kind))
            .map(|(_, v)| v)
            .sum()
    }
}

struct Token {
    tenant: String,
    client_id: String,
    expires: Instant,
}

struct Budget {
    window_start: Instant,
    used: u32,
    blocked_until: Option<Instant>,
    penalty: Duration,
}

/// When an HTTP request arrived, before it waited for the state lock.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub at: Instant,
}

/// A `Retry-After` as the client received it.
#[derive(Debug, Clone, Copy)]
struct Advice {
    given: Instant,
    until: Instant,
}

/// The longest a request can have been in flight: sent by one of the client's workers before
/// another worker had read and acted on a throttled answer. Such requests are not "early".
/// The allowance is this or half the advised wait, whichever is shorter.
const IN_FLIGHT: Duration = Duration::from_millis(50);

/// One seeded random stream per kind of fault, so enabling one fault does not change which
/// requests get the others.
struct FaultRolls {
    status: rand::rngs::StdRng,
    latency: rand::rngs::StdRng,
    drop: rand::rngs::StdRng,
    token: rand::rngs::StdRng,
}

impl FaultRolls {
    fn new(seed: u64) -> Self {
        let stream = |n: u64| rand::rngs::StdRng::seed_from_u64(seed.wrapping_add(n));
        Self {
            status: stream(0),
            latency: stream(1),
            drop: stream(2),
            token: stream(3),
        }
    }
}

/// The emulator's mutable state.
pub struct Graph {
    pub config: EmulatorConfig,
    pub data: Data,
    tokens: HashMap<String, Token>,
    budgets: HashMap<(String, String), Budget>,
    pub counts: RequestCounts,
    rolls: FaultRolls,
    /// Per app: the latest throttled answer's delivery and the end of its `Retry-After`.
    advised: HashMap<(String, String), Advice>,
    /// Whether the HTTP request being answered arrived before its app's advised time.
    arrived_early: bool,
    /// `Retry-After`s given while answering the current HTTP request; they take effect when the
    /// answer is sent ([`Graph::deliver_advice`]), since the client cannot know them earlier.
    pending_advice: Vec<((String, String), Option<u64>, Duration)>,
    /// Requests answered 429/503, by fingerprint: the end of their advised wait. The same
    /// request arriving again before then is a retry that ignored `Retry-After` (it cannot
    /// have been in flight: the client is retrying because it read the answer).
    throttled_requests: HashMap<u64, Instant>,
    pub(crate) base_url: String,
}

impl Graph {
    /// The emulator over `data`, with the configured sites and lists added where missing.
    pub fn new(config: EmulatorConfig, data: Data, base_url: String) -> Result<Self, String> {
        let mut data = data;
        for site in &config.sites {
            if !data
                .sites
                .iter()
                .any(|s| s.hostname == site.hostname && s.path == site.path)
            {
                let name = site
                    .display_name
                    .clone()
                    .unwrap_or_else(|| site.path.rsplit('/').next().unwrap_or("").to_owned());
                data.sites
                    .push(Site::new(&site.hostname, &site.path, &name));
            }
        }
        let rolls = FaultRolls::new(config.faults.seed);
        let mut graph = Self {
            config,
            data,
            tokens: HashMap::new(),
            budgets: HashMap::new(),
            counts: RequestCounts::default(),
            rolls,
            advised: HashMap::new(),
            arrived_early: false,
            pending_advice: Vec::new(),
            throttled_requests: HashMap::new(),
            base_url,
        };
        graph.create_configured_lists()?;
        Ok(graph)
    }

    /// Creates the lists the configuration names that do not exist yet.
    fn create_configured_lists(&mut self) -> Result<(), String> {
        let wanted: Vec<(String, String, Value)> = self
            .config
            .sites
            .iter()
            .flat_map(|site| {
                site.lists
                    .iter()
                    .map(|list| (site.hostname.clone(), site.path.clone(), list.clone()))
            })
            .collect();
        for (hostname, path, body) in wanted {
            let Some(site_index) = self
                .data
                .sites
                .iter()
                .position(|s| s.hostname == hostname && s.path == path)
            else {
                continue;
            };
            let name = body
                .get("displayName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if self.data.sites[site_index]
                .lists
                .iter()
                .any(|l| l.display_name.eq_ignore_ascii_case(name))
            {
                continue;
            }
            let request = Request {
                method: "POST".into(),
                path: String::new(),
                query: Vec::new(),
                headers: HashMap::new(),
                body: serde_json::to_vec(&body).unwrap_or_default(),
            };
            let response = self.create_list(site_index, &request);
            if response.status != 201 {
                let message = response
                    .body
                    .as_ref()
                    .and_then(|b| b.pointer("/error/message"))
                    .and_then(Value::as_str)
                    .unwrap_or("refused")
                    .to_owned();
                return Err(format!(
                    "sites[{hostname}:{path}].lists '{name}' cannot be created: {message}"
                ));
            }
        }
        Ok(())
    }

    pub fn set_faults(&mut self, faults: crate::config::FaultConfig) {
        self.rolls = FaultRolls::new(faults.seed);
        self.config.faults = faults;
    }

    /// Whether faults apply to requests of `kind`.
    fn faults_apply(&self, kind: &str) -> bool {
        let kinds = &self.config.faults.kinds;
        kinds.is_empty() || kinds.iter().any(|k| k == kind)
    }

    /// The added latency for one HTTP request of `kind`.
    pub(crate) fn roll_latency(&mut self, kind: &str) -> Duration {
        let faults = &self.config.faults;
        if (faults.latency_ms == 0 && faults.latency_jitter_ms == 0) || !self.faults_apply(kind) {
            return Duration::ZERO;
        }
        let jitter = if faults.latency_jitter_ms > 0 {
            self.rolls
                .latency
                .random_range(0..=faults.latency_jitter_ms)
        } else {
            0
        };
        Duration::from_millis(self.config.faults.latency_ms + jitter)
    }

    /// Whether to cut the response to one HTTP request of `kind` (counted as `dropped`).
    pub(crate) fn roll_drop(&mut self, kind: &str) -> bool {
        let rate = self.config.faults.rate_drop;
        if rate <= 0.0 || !self.faults_apply(kind) {
            return false;
        }
        let dropped = self.rolls.drop.random::<f64>() < rate;
        if dropped {
            self.count(&format!("{kind}.dropped"), 0);
        }
        dropped
    }

    pub(crate) fn count(&mut self, kind: &str, status: u16) {
        *self
            .counts
            .by_kind_and_status
            .entry(format!("{kind} {status}"))
            .or_default() += 1;
        self.counts.total += 1;
    }

    /// Notes the arrival of an HTTP request (a single request or a whole `$batch`): one sent
    /// before the end of its app's latest `Retry-After` is counted, and lengthens throttling.
    /// A request is early when it arrives before the end of the advised wait and after the
    /// in-flight allowance ([`IN_FLIGHT`] or half the wait, whichever is shorter): a client that
    /// retries at once, or after a fixed pause of its own, is caught; a request another worker
    /// had already sent is not.
    ///
    /// Independently of timing, a request that repeats one answered 429/503 (same method, URL
    /// and body; `fingerprints` holds one per request, several for a `$batch`) before the end of
    /// its advised wait is early.
    pub(crate) fn note_arrival(
        &mut self,
        headers: &HashMap<String, String>,
        arrived: &Arrival,
        fingerprints: &[u64],
    ) {
        self.throttled_requests
            .retain(|_, until| *until > arrived.at);
        let retried_early = fingerprints
            .iter()
            .any(|f| self.throttled_requests.contains_key(f));
        let app = headers
            .get("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .and_then(|token| self.tokens.get(token))
            .map(|t| (t.tenant.clone(), t.client_id.clone()));
        self.arrived_early = app
            .and_then(|app| self.advised.get(&app).copied())
            .is_some_and(|advice| {
                let allowance = IN_FLIGHT.min((advice.until - advice.given) / 2);
                arrived.at > advice.given + allowance && arrived.at < advice.until
            });
        self.arrived_early |= retried_early;
        if self.arrived_early {
            self.counts.before_retry_after += 1;
        }
        if retried_early {
            self.counts.retried_before_retry_after += 1;
        }
    }

    /// Answers one request (not `$batch`; see [`Graph::batch_item`]).
    pub fn handle(&mut self, request: &Request) -> Response {
        let (kind, response) = self.route(request);
        self.count(kind, response.status);
        response
    }

    fn route(&mut self, request: &Request) -> (&'static str, Response) {
        let path = request.path.trim_end_matches('/').to_owned();
        if let Some(tenant) = path
            .strip_prefix('/')
            .and_then(|p| p.strip_suffix("/oauth2/v2.0/token"))
        {
            return ("token", self.token(tenant, request));
        }
        let Some(rest) = path.strip_prefix("/v1.0") else {
            return (
                "unknown",
                graph_error(
                    404,
                    "BadRequest",
                    &format!(
                        "Resource not found for the segment '{}'.",
                        path.trim_start_matches('/')
                    ),
                ),
            );
        };
        let kind = request_kind(&request.method, rest);
        let app = match self.authenticate(request, kind) {
            Ok(app) => app,
            Err(response) => return ("auth", response),
        };
        let cost = resource_units(kind, request);
        let rate_limit = match self.throttle(&app, cost) {
            Ok(headers) => headers,
            Err(response) => {
                self.advise(&app, request, &response);
                return (kind, response);
            }
        };
        if let Some(response) = self.inject_fault(kind) {
            self.advise(&app, request, &response);
            return (kind, response);
        }
        let mut response = self.graph(request, rest, &app.1);
        response.headers.extend(rate_limit);
        (kind, response)
    }

    fn token(&mut self, tenant: &str, request: &Request) -> Response {
        let form: HashMap<String, String> =
            form_urlencoded::parse(&request.body).into_owned().collect();
        let aad = |status: u16, error: &str, code: u32, text: &str| {
            let trace = new_guid();
            let now = Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
            Response::json(
                status,
                json!({
                    "error": error,
                    "error_description": format!("AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {trace}\r\nTimestamp: {now}"),
                    "error_codes": [code],
                    "timestamp": now,
                    "trace_id": trace,
                    "correlation_id": trace,
                    "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
                }),
            )
        };
        let Some(config) = self.config.tenants.iter().find(|t| t.id == tenant) else {
            return aad(
                400,
                "invalid_request",
                90002,
                &format!(
                    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
                ),
            );
        };
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return aad(
                400,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type.",
            );
        }
        let client_id = form.get("client_id").cloned().unwrap_or_default();
        let Some(app) = config.apps.iter().find(|a| a.client_id == client_id) else {
            return aad(
                400,
                "unauthorized_client",
                700016,
                &format!(
                    "Application with identifier '{client_id}' was not found in the directory '{tenant}'."
                ),
            );
        };
        if form.get("client_secret") != Some(&app.client_secret) {
            return aad(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app.",
            );
        }
        if !form.get("scope").is_some_and(|s| s.ends_with("/.default")) {
            return aad(
                400,
                "invalid_scope",
                1002012,
                "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
            );
        }
        let token = format!(
            "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.{}",
            new_guid().replace('-', "")
        );
        let lifetime = self.config.token_lifetime_seconds;
        self.tokens.insert(
            token.clone(),
            Token {
                tenant: tenant.to_owned(),
                client_id: client_id.clone(),
                expires: Instant::now() + Duration::from_secs(lifetime),
            },
        );
        Response::json(
            200,
            json!({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token}),
        )
    }

    /// Remembers the `Retry-After` a throttled answer gave the app.
    fn advise(&mut self, app: &(String, String), request: &Request, response: &Response) {
        let wait = response
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
            .and_then(|(_, value)| value.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0);
        if let Some(seconds) = wait {
            self.pending_advice.push((
                app.clone(),
                Some(fingerprint(request)),
                Duration::from_secs_f64(seconds),
            ));
        }
    }

    /// The answer to the current HTTP request is being sent: its `Retry-After`s start now. An
    /// answer that will be cut off (`dropped`) advises nothing: the client never reads it.
    pub(crate) fn deliver_advice(&mut self, dropped: bool) {
        let now = Instant::now();
        let advice = std::mem::take(&mut self.pending_advice);
        if dropped {
            return;
        }
        for (app, request, wait) in advice {
            if let Some(request) = request {
                self.throttled_requests.insert(request, now + wait);
            }
            let until = now + wait;
            let entry = self
                .advised
                .entry(app)
                .or_insert(Advice { given: now, until });
            *entry = Advice {
                given: now,
                until: entry.until.max(until),
            };
        }
    }

    /// Bumps every list's delta generation: outstanding tokens become stale.
    pub fn reset_delta(&mut self) {
        for list in self.data.sites.iter_mut().flat_map(|s| s.lists.iter_mut()) {
            list.delta_generation += 1;
        }
    }

    /// Expires every issued token now (tests of refresh on expiry).
    pub fn expire_tokens(&mut self) {
        let past = Instant::now();
        for token in self.tokens.values_mut() {
            token.expires = past;
        }
    }

    fn authenticate(
        &mut self,
        request: &Request,
        kind: &str,
    ) -> Result<(String, String), Response> {
        let Some(header) = request.headers.get("authorization") else {
            return Err(graph_error(
                401,
                "InvalidAuthenticationToken",
                "Access token is empty.",
            ));
        };
        let token = header.strip_prefix("Bearer ").unwrap_or("");
        if self.config.faults.rate_token_expiry > 0.0
            && self.faults_apply(kind)
            && self.rolls.token.random::<f64>() < self.config.faults.rate_token_expiry
            && let Some(issued) = self.tokens.get_mut(token)
        {
            // Revoked early: the token stays expired, as a real early expiry would.
            issued.expires = Instant::now();
        }
        match self.tokens.get(token) {
            None => Err(graph_error(
                401,
                "InvalidAuthenticationToken",
                "CompactToken parsing failed with error code: 80049217",
            )),
            Some(t) if t.expires <= Instant::now() => Err(graph_error(
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
            )),
            Some(t) => Ok((t.tenant.clone(), t.client_id.clone())),
        }
    }

    /// The resource-unit budget per app per tenant per minute (§8.2–8.4). A request within the
    /// budget gets `RateLimit-*` headers once 80 % of it is used; one over it gets 429 (or the
    /// configured 503) with `Retry-After` and the same headers. Requests while the app should be
    /// waiting are counted, charged, and lengthen the wait ("throttled requests count towards
    /// usage limits").
    fn throttle(
        &mut self,
        app: &(String, String),
        cost: u32,
    ) -> Result<Vec<(String, String)>, Response> {
        if !self.config.throttle.enabled {
            return Ok(Vec::new());
        }
        let limit = self.config.throttle.resource_units_per_minute;
        let status = self.config.throttle.respond_with;
        let window = Duration::from_secs(self.config.throttle.window_seconds.max(1));
        let now = Instant::now();
        let budget = self.budgets.entry(app.clone()).or_insert(Budget {
            window_start: now,
            used: 0,
            blocked_until: None,
            penalty: Duration::ZERO,
        });
        let headers = |remaining: u32, reset: Duration| {
            vec![
                ("RateLimit-Limit".to_owned(), limit.to_string()),
                ("RateLimit-Remaining".to_owned(), remaining.to_string()),
                (
                    "RateLimit-Reset".to_owned(),
                    (reset.as_secs_f64().ceil() as u64).to_string(),
                ),
            ]
        };
        let throttled = |wait: Duration| {
            let seconds = (wait.as_secs_f64().ceil() as u64).max(1);
            let mut response = throttled_response(status, &seconds.to_string());
            response.headers.extend(headers(0, wait));
            response
        };
        if let Some(until) = budget.blocked_until {
            if now < until {
                budget.used = budget.used.saturating_add(cost);
                if !self.arrived_early {
                    // Sent with others in a batch before the client could know: no penalty.
                    return Err(throttled(until - now));
                }
                // Ignoring Retry-After doubles the extra wait each time.
                budget.penalty = (budget.penalty * 2).max(Duration::from_secs(1));
                let until = until + budget.penalty;
                budget.blocked_until = Some(until);
                return Err(throttled(until - now));
            }
            budget.blocked_until = None;
        }
        if now.duration_since(budget.window_start) >= window {
            budget.window_start = now;
            budget.used = 0;
            budget.penalty = Duration::ZERO;
        }
        let reset = window.saturating_sub(now.duration_since(budget.window_start));
        if budget.used + cost > limit {
            let wait = reset.max(Duration::from_secs(1));
            budget.blocked_until = Some(now + wait);
            return Err(throttled(wait));
        }
        budget.used += cost;
        if u64::from(budget.used) * 5 >= u64::from(limit) * 4 {
            Ok(headers(limit - budget.used, reset))
        } else {
            Ok(Vec::new())
        }
    }

    /// Injected error statuses; they are answered before the request takes effect.
    fn inject_fault(&mut self, kind: &str) -> Option<Response> {
        let faults = &self.config.faults;
        let bands = [
            faults.rate_429,
            faults.rate_503,
            faults.rate_500,
            faults.rate_504,
        ];
        if bands.iter().all(|r| *r <= 0.0) || !self.faults_apply(kind) {
            return None;
        }
        let retry = format!("{}", faults.retry_after_seconds);
        let roll: f64 = self.rolls.status.random();
        let mut edge = 0.0;
        let hit = bands.iter().position(|rate| {
            edge += rate;
            roll < edge
        })?;
        Some(match hit {
            0 => throttled_response(429, &retry),
            1 => throttled_response(503, &retry),
            2 => graph_error(
                500,
                "generalException",
                "General exception while processing",
            ),
            _ => graph_error(
                504,
                "gatewayTimeout",
                "The server, while acting as a proxy, did not receive a timely response from the upstream server.",
            ),
        })
    }

    fn graph(&mut self, request: &Request, rest: &str, client_id: &str) -> Response {
        let Some(sites_path) = rest.strip_prefix("/sites/") else {
            return graph_error(
                400,
                "BadRequest",
                &format!(
                    "Resource not found for the segment '{}'.",
                    rest.trim_start_matches('/')
                ),
            );
        };
        // Site by path: `{hostname}:/{path}` optionally followed by `:/lists…`.
        let (site_index, tail) = if let Some((hostname, after)) = sites_path.split_once(":/") {
            let (site_path, tail) = match after.split_once(":/") {
                Some((p, t)) => (format!("/{p}"), format!("/{t}")),
                None => (format!("/{}", after.trim_end_matches(':')), String::new()),
            };
            match self
                .data
                .sites
                .iter()
                .position(|s| s.hostname == hostname && s.path.eq_ignore_ascii_case(&site_path))
            {
                Some(i) => (i, tail),
                None => {
                    return graph_error(404, "itemNotFound", "Requested site could not be found");
                }
            }
        } else {
            let (id, tail) = match sites_path.split_once('/') {
                Some((id, t)) => (id, format!("/{t}")),
                None => (sites_path, String::new()),
            };
            match self
                .data
                .sites
                .iter()
                .position(|s| s.id.eq_ignore_ascii_case(id))
            {
                Some(i) => (i, tail),
                None => {
                    return graph_error(404, "itemNotFound", "Requested site could not be found");
                }
            }
        };
        let segments: Vec<&str> = tail.split('/').filter(|s| !s.is_empty()).collect();
        let method = request.method.as_str();
        match (method, segments.as_slice()) {
            ("GET", []) => Response::json(200, self.data.sites[site_index].to_json()),
            ("GET", ["lists"]) => {
                let site = &self.data.sites[site_index];
                let value: Vec<Value> = site.lists.iter().map(|l| l.to_json(site)).collect();
                Response::json(
                    200,
                    json!({"@odata.context": format!("{}/$metadata#sites('{}')/lists", self.base_url, site.id), "value": value}),
                )
            }
            ("POST", ["lists"]) => self.create_list(site_index, request),
            (_, ["lists", list, rest @ ..]) => {
                let site = &self.data.sites[site_index];
                let Some(list_index) = site
                    .lists
                    .iter()
                    .position(|l| l.id.eq_ignore_ascii_case(list) || l.display_name == *list)
                else {
                    return graph_error(404, "itemNotFound", "The specified list was not found");
                };
                self.list_request(site_index, list_index, method, rest, request, client_id)
            }
            _ => graph_error(
                400,
                "BadRequest",
                &format!("Unsupported request {method} {tail}"),
            ),
        }
    }

    fn create_list(&mut self, site_index: usize, request: &Request) -> Response {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return graph_error(400, "BadRequest", "Invalid request body.");
        };
        if body.get("name").is_some() {
            return graph_error(
                400,
                "invalidRequest",
                "Cannot define a 'name' for a list as it is assigned by the server. Instead, provide 'displayName'",
            );
        }
        let Some(display_name) = body.get("displayName").and_then(Value::as_str) else {
            return graph_error(
                400,
                "invalidRequest",
                "The displayName property is required.",
            );
        };
        let site = &mut self.data.sites[site_index];
        if site
            .lists
            .iter()
            .any(|l| l.display_name.eq_ignore_ascii_case(display_name))
        {
            return graph_error(
                409,
                "nameAlreadyExists",
                "A list, survey, discussion board, or document library with the specified title already exists in this Web site.",
            );
        }
        let now = Utc::now();
        let mut list = List {
            id: new_guid(),
            display_name: display_name.to_owned(),
            name: display_name.replace(' ', ""),
            description: body
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            template: body
                .pointer("/list/template")
                .and_then(Value::as_str)
                .unwrap_or("genericList")
                .to_owned(),
            created: now,
            modified: now,
            columns: template_columns(),
            items: Default::default(),
            next_item_id: 1,
            change_seq: 0,
            tombstones: Default::default(),
            delta_generation: 0,
            unique_index: None,
        };
        if let Some(columns) = body.get("columns").and_then(Value::as_array) {
            for column in columns {
                match parse_column(column) {
                    Ok(column) => list.columns.push(column),
                    Err(response) => return response,
                }
            }
        }
        let json = list.to_json(site);
        site.lists.push(list);
        Response::json(201, json)
    }

    fn list_request(
        &mut self,
        site_index: usize,
        list_index: usize,
        method: &str,
        rest: &[&str],
        request: &Request,
        client_id: &str,
    ) -> Response {
        let page_size = self.config.default_page_size;
        let max_page = self.config.max_page_size;
        let base_url = self.base_url.clone();
        let behaviour = &self.config.behaviour;
        let site = &mut self.data.sites[site_index];
        // The site without its lists: item JSON needs only its id and URL (cloning the lists would
        // copy every item on every request).
        let site_view = Site {
            id: site.id.clone(),
            hostname: site.hostname.clone(),
            path: site.path.clone(),
            display_name: site.display_name.clone(),
            created: site.created,
            lists: Vec::new(),
        };
        let list = &mut site.lists[list_index];
        list.ensure_unique_index();
        match (method, rest) {
            ("GET", []) => Response::json(200, list.to_json(&site_view)),
            ("GET", ["columns"]) => {
                let show_hidden = query(request, "$select")
                    .is_some_and(|s| s.split(',').any(|f| f.trim() == "hidden"));
                let value: Vec<Value> = list
                    .columns
                    .iter()
                    .filter(|c| show_hidden || !c.hidden)
                    .map(Column::to_json)
                    .collect();
                Response::json(200, json!({"value": value}))
            }
            ("POST", ["columns"]) => {
                let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
                    return graph_error(400, "BadRequest", "Invalid request body.");
                };
                let column = match parse_column(&body) {
                    Ok(column) => column,
                    Err(response) => return response,
                };
                if list.column(&column.name).is_some() {
                    return graph_error(
                        409,
                        "nameAlreadyExists",
                        &format!("A duplicate field name \"{}\" was found.", column.name),
                    );
                }
                let json = column.to_json();
                list.columns.push(column);
                list.unique_index = None;
                Response::json(201, json)
            }
            ("GET", ["items"]) => {
                list_items(&site_view, list, request, page_size, max_page, &base_url)
            }
            ("GET", ["items", "delta" | "delta()"]) => {
                crate::delta::delta(&site_view, list, request, &self.config, &base_url)
            }
            ("POST", ["items"]) => {
                let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
                    return graph_error(400, "BadRequest", "Invalid request body.");
                };
                let fields = body
                    .get("fields")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                if let Err(response) = validate_fields(list, &fields, None, behaviour) {
                    return response;
                }
                let now = Utc::now();
                let id = list.next_item_id;
                list.next_item_id += 1;
                let mut stored = Map::new();
                for (name, value) in fields {
                    if !value.is_null() && !name.contains('@') {
                        let value = stored_value(list, &name, value, behaviour);
                        stored.insert(name, value);
                    }
                }
                let seq = list.next_change();
                list.reindex(id, None, Some(&stored));
                let item = Item {
                    id,
                    fields: stored,
                    created: now,
                    modified: now,
                    version: 1,
                    etag_guid: new_guid(),
                    author_app: client_id.to_owned(),
                    created_seq: seq,
                    changed_seq: seq,
                };
                let json = item.to_json(&site_view, list, true, None);
                list.items.insert(id, item);
                list.modified = now;
                Response::json(201, json).header(
                    "Location",
                    format!(
                        "{base_url}/sites/{}/lists/{}/items/{id}",
                        site_view.id, list.id
                    ),
                )
            }
            (_, ["items", id, tail @ ..]) => {
                let Some(id) = id
                    .parse::<i64>()
                    .ok()
                    .filter(|id| list.items.contains_key(id))
                else {
                    return graph_error(404, "itemNotFound", "The requested item was not found.");
                };
                if let Some(expected) = request.headers.get("if-match")
                    && expected != "*"
                    && list
                        .items
                        .get(&id)
                        .is_some_and(|item| item.etag() != *expected)
                    && method != "GET"
                {
                    return graph_error(
                        412,
                        "resourceModified",
                        &behaviour.precondition_failed_message,
                    );
                }
                match (method, tail) {
                    ("GET", []) => {
                        let expand = query(request, "$expand").or_else(|| query(request, "expand"));
                        let (expand_fields, select) = parse_expand(expand.as_deref());
                        let item = &list.items[&id];
                        Response::json(
                            200,
                            item.to_json(&site_view, list, expand_fields, select.as_deref()),
                        )
                    }
                    ("GET", ["fields"]) => {
                        Response::json(200, list.items[&id].fields_json(list, None))
                    }
                    ("DELETE", []) => {
                        if let Some(item) = list.items.remove(&id) {
                            let seq = list.next_change();
                            list.reindex(id, Some(&item.fields), None);
                            list.tombstones.insert(
                                id,
                                Tombstone {
                                    created_seq: item.created_seq,
                                    deleted_seq: seq,
                                },
                            );
                        }
                        list.modified = Utc::now();
                        Response::empty(204)
                    }
                    ("PATCH", ["fields"]) => {
                        let Ok(Value::Object(fields)) =
                            serde_json::from_slice::<Value>(&request.body)
                        else {
                            return graph_error(400, "BadRequest", "Invalid request body.");
                        };
                        if let Err(response) = validate_fields(list, &fields, Some(id), behaviour) {
                            return response;
                        }
                        let now = Utc::now();
                        let fields: Vec<(String, Value)> = fields
                            .into_iter()
                            .filter(|(name, _)| !name.contains('@'))
                            .map(|(name, value)| {
                                let value = if value.is_null() {
                                    value
                                } else {
                                    stored_value(list, &name, value, behaviour)
                                };
                                (name, value)
                            })
                            .collect();
                        let seq = list.next_change();
                        let Some(item) = list.items.get_mut(&id) else {
                            return graph_error(
                                404,
                                "itemNotFound",
                                "The requested item was not found.",
                            );
                        };
                        let old = item.fields.clone();
                        for (name, value) in fields {
                            if value.is_null() {
                                item.fields.remove(&name);
                            } else {
                                item.fields.insert(name, value);
                            }
                        }
                        item.version += 1;
                        item.modified = now;
                        item.changed_seq = seq;
                        let new = item.fields.clone();
                        list.reindex(id, Some(&old), Some(&new));
                        list.modified = now;
                        Response::json(200, list.items[&id].fields_json(list, None))
                    }
                    _ => graph_error(
                        405,
                        "BadRequest",
                        "The requested method is not supported for this resource.",
                    ),
                }
            }
            _ => graph_error(
                400,
                "BadRequest",
                &format!(
                    "Unsupported request {method} lists/{}/{}",
                    list.id,
                    rest.join("/")
                ),
            ),
        }
    }

    /// Answers one `$batch` entry, unpacked by [`batch_request`].
    pub fn batch_item(&mut self, entry: &Value, request: &Request) -> Value {
        let id = entry
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let response = self.handle(request);
        let headers: Map<String, Value> = response
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let mut out = json!({"id": id, "status": response.status, "headers": headers});
        if let (Some(body), Some(map)) = (response.body, out.as_object_mut()) {
            map.insert("body".into(), body);
        }
        out
    }
}

/// A `$batch` entry as a request of its own: URL relative to the version root, the batch's
/// headers overlaid with the entry's.
pub(crate) fn batch_request(entry: &Value, headers: &HashMap<String, String>) -> Request {
    let method = entry
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or("GET")
        .to_ascii_uppercase();
    let url = entry.get("url").and_then(Value::as_str).unwrap_or_default();
    let (path, query_text) = url.split_once('?').unwrap_or((url, ""));
    let mut sub_headers: HashMap<String, String> = headers.clone();
    if let Some(extra) = entry.get("headers").and_then(Value::as_object) {
        for (k, v) in extra {
            if let Some(v) = v.as_str() {
                sub_headers.insert(k.to_ascii_lowercase(), v.to_owned());
            }
        }
    }
    let body = entry
        .get("body")
        .map(|b| serde_json::to_vec(b).unwrap_or_default())
        .unwrap_or_default();
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned();
    Request {
        method,
        path: format!(
            "/v1.0{}",
            if decoded.starts_with('/') {
                decoded
            } else {
                format!("/{decoded}")
            }
        ),
        query: form_urlencoded::parse(query_text.as_bytes())
            .into_owned()
            .collect(),
        headers: sub_headers,
        body,
    }
}

/// A throttled answer (§8.1): 429 `TooManyRequests` or 503 `serviceNotAvailable`, with
/// `Retry-After` in seconds.
fn throttled_response(status: u16, retry_after: &str) -> Response {
    let response = if status == 503 {
        graph_error(
            503,
            "serviceNotAvailable",
            "The service is temporarily unavailable.",
        )
    } else {
        graph_error(429, "TooManyRequests", "Please retry again later.")
    };
    response.header("Retry-After", retry_after.to_owned())
}

/// Identifies a request by method, path, query and body, so a retry can be recognised.
pub(crate) fn fingerprint(request: &Request) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    request.method.hash(&mut hasher);
    request.path.hash(&mut hasher);
    request.query.hash(&mut hasher);
    request.body.hash(&mut hasher);
    hasher.finish()
}

/// Resource units a request costs (§8.2, §6.4): single reads and delta with a token 1,
/// everything else 2.
fn resource_units(kind: &str, request: &Request) -> u32 {
    match kind {
        "item.get" | "list.get" | "site.get" => 1,
        "item.delta" if query(request, "token").is_some() => 1,
        _ => 2,
    }
}

/// The request kind used in counts and resource-unit costs.
pub(crate) fn request_kind(method: &str, rest: &str) -> &'static str {
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let has = |name: &str| segments.contains(&name);
    match method {
        "POST" if rest == "/$batch" => "batch",
        "GET" if has("items") && segments.last() == Some(&"items") => "item.list",
        "GET" if has("items") && matches!(segments.last(), Some(&"delta") | Some(&"delta()")) => {
            "item.delta"
        }
        "GET" if has("items") => "item.get",
        "POST" if has("items") => "item.create",
        "PATCH" if has("items") => "item.update",
        "DELETE" if has("items") => "item.delete",
        "GET" if has("columns") => "column.list",
        "POST" if has("columns") => "column.create",
        "GET" if segments.last() == Some(&"lists") => "list.list",
        "POST" if has("lists") => "list.create",
        "GET" if has("lists") => "list.get",
        "GET" => "site.get",
        _ => "other",
    }
}

pub(crate) fn query(request: &Request, name: &str) -> Option<String> {
    request
        .query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

/// `fields` or `fields(select=A,B)` → (expand, select).
pub(crate) fn parse_expand(expand: Option<&str>) -> (bool, Option<Vec<String>>) {
    let Some(expand) = expand else {
        return (false, None);
    };
    let Some(rest) = expand.trim().strip_prefix("fields") else {
        return (false, None);
    };
    let select = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .and_then(|inner| inner.trim().strip_prefix("select="))
        .map(|list| list.split(',').map(|s| s.trim().to_owned()).collect());
    (true, select)
}

fn parse_column(body: &Value) -> Result<Column, Response> {
    let Some(name) = body.get("name").and_then(Value::as_str) else {
        return Err(graph_error(
            400,
            "invalidRequest",
            "The name property is required for a column.",
        ));
    };
    let kinds = [
        "text",
        "number",
        "dateTime",
        "boolean",
        "choice",
        "currency",
        "lookup",
        "hyperlinkOrPicture",
        "personOrGroup",
        "calculated",
    ];
    let Some((kind, facet)) = kinds
        .iter()
        .find_map(|k| body.get(*k).map(|f| (k.to_string(), f.clone())))
    else {
        return Err(graph_error(
            400,
            "invalidRequest",
            &format!("Column '{name}' needs a type facet such as text or number."),
        ));
    };
    let flag = |key: &str| body.get(key).and_then(Value::as_bool).unwrap_or(false);
    if flag("enforceUniqueValues") && !flag("indexed") {
        return Err(graph_error(
            400,
            "invalidRequest",
            "A column that enforces unique values must be indexed.",
        ));
    }
    Ok(Column {
        id: stable_guid(&format!("column:{name}:{}", new_guid())),
        name: name.to_owned(),
        display_name: body
            .get("displayName")
            .and_then(Value::as_str)
            .unwrap_or(name)
            .to_owned(),
        description: body
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        hidden: flag("hidden"),
        indexed: flag("indexed"),
        required: flag("required"),
        read_only: flag("readOnly"),
        enforce_unique_values: flag("enforceUniqueValues"),
        kind,
        facet,
    })
}

/// SharePoint's value checks on create and update (graph-api.md §5.5, §10; §14 choices and
/// `required` as the behaviour settings say).
fn validate_fields(
    list: &List,
    fields: &Map<String, Value>,
    item: Option<i64>,
    behaviour: &BehaviourConfig,
) -> Result<(), Response> {
    for (name, value) in fields {
        if name.contains('@') {
            continue;
        }
        let column_name = name
            .strip_suffix("LookupId")
            .filter(|base| list.column(base).is_some())
            .unwrap_or(name);
        let Some(column) = list.column(column_name) else {
            return Err(graph_error(
                400,
                "invalidRequest",
                &format!("Field '{name}' is not recognized"),
            ));
        };
        if column.read_only {
            return Err(graph_error(
                400,
                "invalidRequest",
                &format!("Field '{name}' is read-only"),
            ));
        }
        if value.is_null() {
            if behaviour.enforce_required && column.required {
                return Err(required_missing(name));
            }
            continue;
        }
        let ok = match column.kind.as_str() {
            "text" | "choice" => value.is_string(),
            "number" | "currency" => value.is_number(),
            "boolean" => value.is_boolean(),
            "dateTime" => value.as_str().and_then(parse_date_time).is_some(),
            "hyperlinkOrPicture" => false,
            _ => true,
        };
        if !ok {
            return Err(graph_error(
                400,
                "invalidRequest",
                &behaviour.invalid_value_message,
            ));
        }
        if behaviour.enforce_choices
            && column.kind == "choice"
            && let (Some(text), Some(choices)) = (
                value.as_str(),
                column.facet.get("choices").and_then(Value::as_array),
            )
            && !choices.iter().any(|c| c.as_str() == Some(text))
        {
            return Err(graph_error(
                400,
                "invalidRequest",
                &format!("The value '{text}' is not one of the choices of field '{name}'."),
            ));
        }
        if let (Some(max), Some(text)) = (column.max_length(), value.as_str())
            && text.chars().count() as u64 > max
        {
            let message = behaviour
                .too_long_message
                .replace("{field}", name)
                .replace("{max}", &max.to_string());
            return Err(graph_error(400, "invalidRequest", &message));
        }
        if column.enforce_unique_values && list.unique_owner(name, value, item).is_some() {
            return Err(graph_error(
                409,
                "nameAlreadyExists",
                &format!(
                    "The list item could not be added or updated because duplicate values were found in the following field(s) in the list: {name}."
                ),
            ));
        }
    }
    if behaviour.enforce_required && item.is_none() {
        let missing = list
            .columns
            .iter()
            .find(|c| c.required && !c.read_only && fields.get(&c.name).is_none_or(Value::is_null));
        if let Some(column) = missing {
            return Err(required_missing(&column.name));
        }
    }
    Ok(())
}

fn required_missing(name: &str) -> Response {
    graph_error(
        400,
        "invalidRequest",
        &format!("Field '{name}' is required."),
    )
}

/// An ISO 8601 instant, or a date alone (midnight, no offset).
fn parse_date_time(text: &str) -> Option<(chrono::NaiveDate, Option<chrono::DateTime<Utc>>)> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        let at = at.with_timezone(&Utc);
        return Some((at.date_naive(), Some(at)));
    }
    if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S") {
        return Some((naive.date(), None));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .map(|date| (date, None))
}

/// The value as SharePoint stores and returns it: date and time columns as a UTC instant in
/// whole seconds; date-only columns as local midnight of the site's time zone, in UTC (§10).
fn stored_value(list: &List, name: &str, value: Value, behaviour: &BehaviourConfig) -> Value {
    let Some(column) = list.column(name).filter(|c| c.kind == "dateTime") else {
        return value;
    };
    let Some((date, instant)) = value.as_str().and_then(parse_date_time) else {
        return value;
    };
    let offset = chrono::Duration::minutes(i64::from(behaviour.site_utc_offset_minutes));
    let date_only = column.facet.get("format").and_then(Value::as_str) == Some("dateOnly");
    let local_midnight = date.and_hms_opt(0, 0, 0).map(|m| m.and_utc() - offset);
    let at = match (date_only, instant) {
        (false, Some(at)) => Some(at),
        // No offset given: the site's local time.
        (false, None) => value
            .as_str()
            .and_then(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S").ok())
            .map(|naive| naive.and_utc() - offset)
            .or(local_midnight),
        // An instant is first converted to the site's time zone, then cut to its date.
        (true, Some(at)) => (at + offset)
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|m| m.and_utc() - offset),
        (true, None) => local_midnight,
    };
    match at {
        Some(at) => Value::String(crate::state::timestamp(at)),
        None => value,
    }
}

/// `GET …/items` with `$expand`, `$filter` (`fields/X eq 'v'`), `$top` and `$skiptoken` paging.
fn list_items(
    site: &Site,
    list: &List,
    request: &Request,
    page_size: usize,
    max_page: usize,
    base_url: &str,
) -> Response {
    let expand = query(request, "$expand").or_else(|| query(request, "expand"));
    let (expand_fields, select) = parse_expand(expand.as_deref());
    let top = match query(request, "$top") {
        Some(text) => match text.parse::<usize>() {
            Ok(n) if n > 0 => n.min(max_page),
            _ => return graph_error(400, "invalidRequest", "Invalid value for $top."),
        },
        None => page_size,
    };
    let after: i64 = query(request, "$skiptoken")
        .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split("p_ID=").nth(1).and_then(|id| id.parse().ok()))
        .unwrap_or(0);
    let filter = match query(request, "$filter") {
        Some(text) => match parse_filter(&text) {
            Ok(filter) => Some(filter),
            Err(response) => return response,
        },
        None => None,
    };
    if let Some((field, _)) = &filter {
        let Some(column) = list.column(field) else {
            return graph_error(
                400,
                "invalidRequest",
                &format!("Field '{field}' is not recognized"),
            );
        };
        let honoured = request
            .headers
            .get("prefer")
            .is_some_and(|p| p.contains("HonorNonIndexedQueriesWarningMayFailRandomly"));
        if !column.indexed && !honoured {
            return graph_error(
                400,
                "invalidRequest",
                &format!(
                    "Field '{field}' cannot be referenced in filter or orderby as it is not indexed. Provide the 'Prefer: HonorNonIndexedQueriesWarningMayFailRandomly' header to allow this, but be warned that such queries may fail on large lists."
                ),
            );
        }
    }
    let matching =
        list.items
            .values()
            .filter(|item| item.id > after)
            .filter(|item| match &filter {
                Some((field, value)) => item.fields.get(field) == Some(value),
                None => true,
            });
    let page: Vec<&Item> = matching.take(top + 1).collect();
    let more = page.len() > top;
    let page = &page[..page.len().min(top)];
    let value: Vec<Value> = page
        .iter()
        .map(|item| item.to_json(site, list, expand_fields, select.as_deref()))
        .collect();
    let mut body = json!({
        "@odata.context": format!("{base_url}/$metadata#sites('{}')/lists('{}')/items", site.id, list.id),
        "value": value,
    });
    if more && let (Some(last), Some(map)) = (page.last(), body.as_object_mut()) {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("Paged=TRUE&p_ID={}", last.id));
        let mut params: Vec<(String, String)> = request
            .query
            .iter()
            .filter(|(k, _)| k != "$skiptoken")
            .cloned()
            .collect();
        params.push(("$skiptoken".into(), token));
        // Keys keep their `$` as the service writes them; values are percent-encoded.
        let query_text: String = params
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    percent_encoding::utf8_percent_encode(v, QUERY_VALUE)
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        map.insert(
            "@odata.nextLink".into(),
            Value::String(format!(
                "{base_url}/sites/{}/lists/{}/items?{query_text}",
                site.id, list.id
            )),
        );
    }
    Response::json(200, body)
}

/// `fields/X eq 'v'` or `fields/X eq 5`; anything else is refused as SharePoint refuses
/// filters it does not support.
fn parse_filter(text: &str) -> Result<(String, Value), Response> {
    let invalid = || graph_error(400, "BadRequest", "Invalid filter clause");
    let mut parts = text.splitn(3, ' ');
    let (Some(field), Some(op), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid());
    };
    let Some(field) = field.strip_prefix("fields/") else {
        return Err(invalid());
    };
    if op != "eq" {
        return Err(graph_error(
            400,
            "invalidRequest",
            "The provided filter statement is not supported",
        ));
    }
    let value = value.trim();
    let value = if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        Value::String(inner.replace("''", "'"))
    } else if let Ok(n) = value.parse::<i64>() {
        Value::from(n)
    } else if let Ok(f) = value.parse::<f64>() {
        Value::from(f)
    } else if value == "true" || value == "false" {
        Value::Bool(value == "true")
    } else {
        return Err(invalid());
    };
    Ok((field.to_owned(), value))
}
