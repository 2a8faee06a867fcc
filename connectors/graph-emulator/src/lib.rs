//! A local emulator of the Microsoft Graph v1.0 endpoints SyncBridge uses for SharePoint lists:
//! the client-credentials token endpoint, sites, lists, columns, list items with `$expand`,
//! `$filter`, `$top` and paging, `$batch`, resource-unit throttling with `Retry-After`, and
//! deterministic fault injection. Tests start it in process with [`Emulator::start_local`] and
//! point a config at it with [`ConnectionInfo::config_section`]; users run it as
//! `syncbridge emulator`.
//!
//! It is the test double that judges the SharePoint connector, so it shares no code with it and
//! follows `shared/notes/graph-api.md`: shapes the real service would not send are bugs. Where
//! the service's behaviour is unknown, the choice is written in this crate's README.
//!
//! Admin endpoints live under `/_emulator`, a path Graph never uses: `GET /_emulator/counts`,
//! `GET /_emulator/state`, `GET /_emulator/config`, `POST /_emulator/reset`,
//! `POST /_emulator/faults`, `POST /_emulator/throttle`, `POST /_emulator/behaviour`,
//! `POST /_emulator/reset-delta`, `POST /_emulator/expire-tokens`.

mod config;
mod delta;
mod graph;
mod state;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde::Serialize;
use serde_json::{Value, json};

pub use config::{
    AppConfig, BehaviourConfig, ConfigError, EmulatorConfig, FaultConfig, SiteConfig, TenantConfig,
    ThrottleConfig,
};
pub use graph::RequestCounts;
use graph::{Arrival, Graph, Request, Response, graph_error};
pub use state::Data;

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    #[error("cannot listen on {addr}: {source}; choose another address with --listen")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the emulator configuration is not valid: {0}")]
    Config(String),
    #[error("cannot read the emulator data file {path}: {message}")]
    Data { path: PathBuf, message: String },
}

/// How to reach a running emulator, as `syncbridge emulator --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionInfo {
    pub base_url: String,
    pub token_url: String,
    pub authority_host: String,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub site_hostname: String,
    pub site_path: String,
}

impl ConnectionInfo {
    /// The `sharepoint:` section of a SyncBridge config with one connection, named `name`, to
    /// this emulator's site and these lists. Every value is a double-quoted YAML string, so a
    /// secret or path with `#`, `: `, quotes or control characters reads back as written (a
    /// `${…}` in it is still a reference to the config loader, as anywhere in a config).
    pub fn config_section(&self, name: &str, lists: &[&str]) -> String {
        let quoted = |value: &str| yaml_quoted(value);
        let lists: Vec<String> = lists
            .iter()
            .map(|list| format!("{{ name: {} }}", quoted(list)))
            .collect();
        format!(
            "sharepoint:\n  - name: {}\n    tenant_id: {}\n    client_id: {}\n    client_secret: {}\n    authority_host: {}\n    graph_base_url: {}\n    sites:\n      - hostname: {}\n        path: {}\n        lists: [{}]\n",
            quoted(name),
            quoted(&self.tenant_id),
            quoted(&self.client_id),
            quoted(&self.client_secret),
            quoted(&self.authority_host),
            quoted(&self.base_url),
            quoted(&self.site_hostname),
            quoted(&self.site_path),
            lists.join(", ")
        )
    }
}

/// `value` as a YAML double-quoted string. Quotes and backslashes are escaped, and so is every
/// character YAML does not allow raw in a document (control characters, DEL, U+FFFE, U+FFFF) or
/// reads as a line break (U+0085, U+2028, U+2029).
fn yaml_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{FFFE}' | '\u{FFFF}') =>
            {
                out.push_str(&format!("\\u{:04X}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Starts emulators.
#[derive(Debug)]
pub struct Emulator;

/// A running emulator; dropping it stops the server.
#[derive(Debug)]
pub struct RunningEmulator {
    addr: SocketAddr,
    graph: Arc<Mutex<Graph>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("sites", &self.data.sites.len())
            .finish_non_exhaustive()
    }
}

type Shared = Arc<Mutex<Graph>>;

impl Emulator {
    /// [`Emulator::start`] on a free port of 127.0.0.1, as the quickstart, the tests and the
    /// benches run it: nothing off the machine can reach it, and runs never collide.
    pub async fn start_local(config: EmulatorConfig) -> Result<RunningEmulator, EmulatorError> {
        Self::start(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Binds `addr` (port 0 picks a free port) and serves on a thread of its own, with its own
    /// runtime: the emulator's timing (arrival of requests, `Retry-After` bookkeeping) does not
    /// depend on how busy the caller's runtime is.
    pub async fn start(
        config: EmulatorConfig,
        addr: SocketAddr,
    ) -> Result<RunningEmulator, EmulatorError> {
        config.validate().map_err(EmulatorError::Config)?;
        let data = match &config.data_file {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path).map_err(|e| EmulatorError::Data {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                serde_json::from_str(&text).map_err(|e| EmulatorError::Data {
                    path: path.clone(),
                    message: e.to_string(),
                })?
            }
            _ => Data::default(),
        };
        let bind = |source| EmulatorError::Bind { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(bind)?;
        listener.set_nonblocking(true).map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;

        let base_url = format!("http://{addr}/v1.0");
        let graph = Graph::new(config, data, base_url).map_err(EmulatorError::Config)?;
        let graph: Shared = Arc::new(Mutex::new(graph));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(graph.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = std::thread::Builder::new()
            .name("graph-emulator".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        tracing::error!(error = %error, "the Graph emulator cannot start its runtime");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => {
                            tracing::error!(error = %error, "the Graph emulator cannot listen");
                            return;
                        }
                    };
                    let server = axum::serve(listener, app).with_graceful_shutdown(async {
                        let _ = rx.await;
                    });
                    if let Err(error) = server.await {
                        tracing::error!(error = %error, "the Graph emulator stopped");
                    }
                });
            })
            .map_err(bind)?;
        Ok(RunningEmulator {
            addr,
            graph,
            shutdown: Some(tx),
            task: Some(task),
        })
    }
}

fn lock(graph: &Shared) -> std::sync::MutexGuard<'_, Graph> {
    // A panic while holding the lock cannot leave the data half-written in a way later requests
    // could not handle, so a poisoned lock is recovered rather than propagated.
    graph
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RunningEmulator {
    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1.0", self.addr)
    }

    pub fn authority_host(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.authority_host(),
            self.connection_info().tenant_id
        )
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}/_emulator", self.addr)
    }

    /// The first tenant, app and site.
    pub fn connection_info(&self) -> ConnectionInfo {
        let graph = lock(&self.graph);
        let tenant = graph.config.tenants.first();
        let app = tenant.and_then(|t| t.apps.first());
        let site = graph.config.sites.first();
        ConnectionInfo {
            base_url: self.base_url(),
            token_url: format!(
                "{}/{}/oauth2/v2.0/token",
                self.authority_host(),
                tenant.map_or("", |t| t.id.as_str())
            ),
            authority_host: self.authority_host(),
            tenant_id: tenant.map(|t| t.id.clone()).unwrap_or_default(),
            client_id: app.map(|a| a.client_id.clone()).unwrap_or_default(),
            client_secret: app.map(|a| a.client_secret.clone()).unwrap_or_default(),
            site_hostname: site.map(|s| s.hostname.clone()).unwrap_or_default(),
            site_path: site.map(|s| s.path.clone()).unwrap_or_default(),
        }
    }

    pub fn counts(&self) -> RequestCounts {
        lock(&self.graph).counts.clone()
    }

    pub fn set_faults(&self, faults: FaultConfig) {
        lock(&self.graph).set_faults(faults);
    }

    pub fn set_throttle(&self, throttle: ThrottleConfig) {
        lock(&self.graph).config.throttle = throttle;
    }

    pub fn set_behaviour(&self, behaviour: BehaviourConfig) {
        lock(&self.graph).config.behaviour = behaviour;
    }

    /// Invalidates every delta token: the next use gets `410 Gone` (a server-side resync).
    pub fn reset_delta(&self) {
        lock(&self.graph).reset_delta();
    }

    /// Expires every token issued so far.
    pub fn expire_tokens(&self) {
        lock(&self.graph).expire_tokens();
    }

    /// A copy of every site, list and item.
    pub fn data(&self) -> Data {
        lock(&self.graph).data.clone()
    }

    /// Stops serving and saves the data file when one is configured.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::task::spawn_blocking(move || task.join()).await;
        }
        let (path, data) = {
            let graph = lock(&self.graph);
            (graph.config.data_file.clone(), graph.data.clone())
        };
        if let Some(path) = path
            && let Ok(text) = serde_json::to_string(&data)
            && let Err(error) = std::fs::write(&path, text)
        {
            tracing::error!(path = %path.display(), error = %error, "cannot save the emulator data");
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn handle(
    axum::extract::State(graph): axum::extract::State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let arrived = Arrival {
        at: std::time::Instant::now(),
    };
    let path = percent_encoding::percent_decode_str(uri.path())
        .decode_utf8_lossy()
        .into_owned();
    let query: Vec<(String, String)> = uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let headers: HashMap<String, String> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned())))
        .collect();
    if let Some(admin) = path.strip_prefix("/_emulator") {
        return encode(admin_request(&graph, method.as_str(), admin, &body), false);
    }
    // Latency and dropped connections belong to the HTTP exchange, so a `$batch` rolls them
    // once, as kind `batch`.
    let kind = match path.strip_prefix("/v1.0") {
        Some(rest) => graph::request_kind(method.as_str(), rest),
        None => "token",
    };
    let delay = lock(&graph).roll_latency(kind);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let response = if path == "/v1.0/$batch" && method == Method::POST {
        batch(&graph, &headers, &body, &arrived)
    } else {
        let request = Request {
            method: method.as_str().to_owned(),
            path,
            query,
            headers,
            body: body.to_vec(),
        };
        let mut graph = lock(&graph);
        graph.note_arrival(&request.headers, &arrived, &[graph::fingerprint(&request)]);
        graph.handle(&request)
    };
    let dropped = {
        let mut graph = lock(&graph);
        let dropped = graph.roll_drop(kind);
        graph.deliver_advice(dropped);
        dropped
    };
    encode(response, dropped)
}

/// The HTTP response; `dropped` sends the status, headers and half the body, then breaks the
/// connection (the request has already taken effect).
fn encode(response: Response, dropped: bool) -> axum::response::Response {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let request_id = state::new_guid();
    let text = response
        .body
        .as_ref()
        .map(|body| serde_json::to_string(body).unwrap_or_default());
    let mut out = match text {
        Some(text) if dropped => {
            let whole = Bytes::from(text.into_bytes());
            let first = whole.slice(..whole.len() / 2);
            let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(first),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected dropped connection",
                )),
            ];
            (
                status,
                axum::body::Body::from_stream(futures::stream::iter(chunks)),
            )
                .into_response()
        }
        Some(text) => (status, text).into_response(),
        None => status.into_response(),
    };
    let headers = out.headers_mut();
    headers.insert(
        HeaderName::from_static("request-id"),
        HeaderValue::from_str(&request_id).unwrap_or(HeaderValue::from_static("0")),
    );
    for (name, value) in response.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.insert(name, value);
        }
    }
    out
}

/// `POST /$batch`: at most 20 requests, unique ids, each answered on its own (§7).
fn batch(
    graph: &Shared,
    headers: &HashMap<String, String>,
    body: &[u8],
    arrived: &Arrival,
) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return graph_error(400, "BadRequest", "Invalid batch payload format.");
    };
    let Some(requests) = body.get("requests").and_then(Value::as_array) else {
        return graph_error(400, "BadRequest", "Invalid batch payload format.");
    };
    if requests.len() > 20 {
        return graph_error(
            400,
            "BadRequest",
            "Number of batch request steps exceeds the maximum of 20.",
        );
    }
    let mut ids = std::collections::HashSet::new();
    for request in requests {
        let Some(id) = request.get("id").and_then(Value::as_str) else {
            return graph_error(400, "BadRequest", "Batch request id is required.");
        };
        if !ids.insert(id.to_ascii_lowercase()) {
            return graph_error(
                400,
                "BadRequest",
                &format!("Batch request contains duplicate id '{id}'."),
            );
        }
        if request.get("body").is_some()
            && request
                .pointer("/headers/Content-Type")
                .or_else(|| request.pointer("/headers/content-type"))
                .is_none()
        {
            return graph_error(
                400,
                "BadRequest",
                "Content-Type header is required when a body is present.",
            );
        }
    }
    if let Err(response) = check_dependencies(requests) {
        return response;
    }
    let subrequests: Vec<Request> = requests
        .iter()
        .map(|entry| graph::batch_request(entry, headers))
        .collect();
    let fingerprints: Vec<u64> = subrequests.iter().map(graph::fingerprint).collect();
    let mut graph = lock(graph);
    graph.note_arrival(headers, arrived, &fingerprints);
    graph.count("batch", 200);
    let mut statuses: HashMap<String, u16> = HashMap::new();
    let mut responses = Vec::with_capacity(requests.len());
    for (request, subrequest) in requests.iter().zip(&subrequests) {
        let id = request
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let failed_dependency = request
            .get("dependsOn")
            .and_then(Value::as_array)
            .is_some_and(|deps| {
                deps.iter()
                    .filter_map(Value::as_str)
                    .any(|d| statuses.get(d).is_none_or(|s| *s >= 400))
            });
        let response = if failed_dependency {
            json!({"id": id, "status": 424, "headers": {"Content-Type": "application/json"},
                   "body": {"error": {"code": "FailedDependency", "message": "Failed dependency."}}})
        } else {
            graph.batch_item(request, subrequest)
        };
        statuses.insert(
            id,
            response
                .get("status")
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(500),
        );
        responses.push(response);
    }
    let auth_failed = responses
        .iter()
        .all(|r| r.get("status").and_then(Value::as_u64) == Some(401))
        && !responses.is_empty();
    if auth_failed {
        return graph_error(401, "InvalidAuthenticationToken", "Access token is empty.");
    }
    Response {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: Some(json!({"responses": responses})),
    }
}

/// `dependsOn` rules (§7.2): a dependency must come earlier in the array, and a batch is either
/// fully parallel (no `dependsOn`) or fully sequential (each request after the first depends on
/// the one before it).
fn check_dependencies(requests: &[Value]) -> Result<(), Response> {
    let depends = |request: &Value| -> Vec<String> {
        request
            .get("dependsOn")
            .and_then(Value::as_array)
            .map(|d| {
                d.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_ascii_lowercase)
                    .collect()
            })
            .unwrap_or_default()
    };
    let id = |request: &Value| {
        request
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    let mut seen = std::collections::HashSet::new();
    for request in requests {
        for dependency in depends(request) {
            if !seen.contains(&dependency) {
                return Err(graph_error(
                    400,
                    "BadRequest",
                    &format!(
                        "Invalid dependency for request Id {}: '{dependency}' must come earlier in the batch.",
                        id(request)
                    ),
                ));
            }
        }
        seen.insert(id(request));
    }
    let parallel = requests.iter().all(|r| depends(r).is_empty());
    let sequential = requests
        .windows(2)
        .all(|pair| depends(&pair[1]) == vec![id(&pair[0])])
        && requests.first().is_none_or(|r| depends(r).is_empty());
    if parallel || sequential {
        Ok(())
    } else {
        Err(graph_error(
            400,
            "BadRequest",
            "Batch should be either fully sequential or fully parallel.",
        ))
    }
}

fn admin_request(graph: &Shared, method: &str, path: &str, body: &[u8]) -> Response {
    let ok = |body: Value| Response {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: Some(body),
    };
    let mut graph = lock(graph);
    match (method, path) {
        ("GET", "/counts") => ok(serde_json::to_value(&graph.counts).unwrap_or_default()),
        ("GET", "/state") => ok(serde_json::to_value(&graph.data).unwrap_or_default()),
        ("POST", "/reset") => {
            let config = graph.config.clone();
            match Graph::new(config, Data::default(), String::new()) {
                Ok(fresh) => {
                    graph.data = fresh.data;
                    graph.counts = RequestCounts::default();
                    ok(json!({"reset": true}))
                }
                Err(error) => graph_error(500, "generalException", &error),
            }
        }
        ("POST", "/expire-tokens") => {
            graph.expire_tokens();
            ok(json!({"expired": true}))
        }
        ("GET", "/config") => ok(json!({
            "faults": graph.config.faults,
            "throttle": graph.config.throttle,
            "behaviour": graph.config.behaviour,
        })),
        ("POST", "/faults") => match serde_json::from_slice::<FaultConfig>(body)
            .map_err(|e| e.to_string())
            .and_then(|f| f.validate().map(|()| f))
        {
            Ok(faults) => {
                graph.set_faults(faults);
                ok(json!({"faults": graph.config.faults}))
            }
            Err(error) => graph_error(400, "BadRequest", &format!("invalid faults: {error}")),
        },
        ("POST", "/throttle") => match serde_json::from_slice::<ThrottleConfig>(body) {
            Ok(throttle)
                if [429, 503].contains(&throttle.respond_with) && throttle.window_seconds > 0 =>
            {
                graph.config.throttle = throttle;
                ok(json!({"throttle": graph.config.throttle}))
            }
            Ok(_) => graph_error(
                400,
                "BadRequest",
                "invalid throttle: respond_with must be 429 or 503 and window_seconds at least 1",
            ),
            Err(error) => graph_error(400, "BadRequest", &format!("invalid throttle: {error}")),
        },
        ("POST", "/behaviour") => {
            let mut config = graph.config.clone();
            match serde_json::from_slice::<BehaviourConfig>(body)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    config.behaviour = b;
                    config.validate()
                }) {
                Ok(()) => {
                    graph.config.behaviour = config.behaviour;
                    ok(json!({"behaviour": graph.config.behaviour}))
                }
                Err(error) => {
                    graph_error(400, "BadRequest", &format!("invalid behaviour: {error}"))
                }
            }
        }
        ("POST", "/reset-delta") => {
            graph.reset_delta();
            ok(json!({"reset": true}))
        }
        _ => graph_error(
            404,
            "itemNotFound",
            "Unknown admin endpoint; see GET /_emulator/counts, /state, /config and POST /reset, /faults, /throttle, /behaviour, /reset-delta, /expire-tokens",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::ConnectionInfo;

    /// Values YAML would otherwise read as something else (a comment, a mapping, a quote, a
    /// number, a line break) or refuse (control characters) come back as written.
    #[test]
    fn the_config_section_reads_back_as_written() {
        let info = ConnectionInfo {
            base_url: "http://127.0.0.1:4000/v1.0".into(),
            token_url: String::new(),
            authority_host: "http://127.0.0.1:4000".into(),
            tenant_id: "00000000-0000-0000-0000-000000000001".into(),
            client_id: "12345".into(),
            client_secret:
                "s3cr#t: \"with' quotes\\ and # more\n\ttab \u{7f}\u{85}\u{9f}\u{2028}\u{fffe} end"
                    .into(),
            site_hostname: "contoso.sharepoint.com".into(),
            site_path: "/sites/demo".into(),
        };
        let text = info.config_section("my emulator", &["Items", "Closed: 2024"]);
        let read: serde_json::Value = serde_saphyr::from_str(&text).expect("YAML");
        let connection = &read["sharepoint"][0];
        assert_eq!(connection["name"], "my emulator");
        assert_eq!(connection["tenant_id"], info.tenant_id.as_str());
        assert_eq!(connection["client_id"], "12345", "a string, not a number");
        assert_eq!(connection["client_secret"], info.client_secret.as_str());
        assert_eq!(connection["authority_host"], info.authority_host.as_str());
        assert_eq!(connection["graph_base_url"], info.base_url.as_str());
        let site = &connection["sites"][0];
        assert_eq!(site["hostname"], info.site_hostname.as_str());
        assert_eq!(site["path"], info.site_path.as_str());
        assert_eq!(
            site["lists"],
            serde_json::json!([{ "name": "Items" }, { "name": "Closed: 2024" }])
        );
    }
}
