//! Conformance of the emulator with shared/notes/graph-api.md, over real HTTP: bodies compared
//! field by field with the spec's examples (ids and timestamps aside), error bodies and headers.

use serde_json::{Value, json};
use syncbridge_graph_emulator::{
    Emulator, EmulatorConfig, FaultConfig, RunningEmulator, ThrottleConfig,
};

struct Client {
    http: reqwest::Client,
    emulator: RunningEmulator,
    token: String,
}

async fn start(config: EmulatorConfig) -> Client {
    let emulator = Emulator::start(config, "127.0.0.1:0".parse().expect("address"))
        .await
        .expect("starts");
    let http = reqwest::Client::new();
    let info = emulator.connection_info();
    let token: Value = http
        .post(&info.token_url)
        .form(&[
            ("client_id", info.client_id.as_str()),
            ("client_secret", info.client_secret.as_str()),
            ("scope", "https://graph.microsoft.com/.default"),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token json");
    let token = token["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    Client {
        http,
        emulator,
        token,
    }
}

impl Client {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.emulator.base_url())
        };
        let mut request = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        (
            status,
            headers,
            if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).expect("json body")
            },
        )
    }

    async fn site_id(&self) -> String {
        let (status, _, site) = self
            .call(
                reqwest::Method::GET,
                "/sites/contoso.sharepoint.com:/sites/projects",
                None,
            )
            .await;
        assert_eq!(status, 200);
        site["id"].as_str().expect("site id").to_owned()
    }

    async fn list(&self, site: &str, name: &str, key_indexed: bool) -> String {
        let body = json!({
            "displayName": name,
            "columns": [
                {"name": "Count", "number": {}},
                {"name": "Key", "text": {"maxLength": 64}, "indexed": key_indexed, "enforceUniqueValues": key_indexed, "hidden": true},
            ],
            "list": {"template": "genericList"}
        });
        let (status, _, list) = self
            .call(
                reqwest::Method::POST,
                &format!("/sites/{site}/lists"),
                Some(body),
            )
            .await;
        assert_eq!(status, 201, "{list}");
        list["id"].as_str().expect("list id").to_owned()
    }
}

fn assert_graph_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(
        body["error"]["innerError"]["request-id"].is_string(),
        "{body}"
    );
    assert!(body["error"]["innerError"]["date"].is_string(), "{body}");
}

#[tokio::test]
async fn token_endpoint_success_and_aadsts_errors() {
    let client = start(EmulatorConfig::default()).await;
    let info = client.emulator.connection_info();
    let form = |secret: &str| {
        vec![
            ("client_id", info.client_id.clone()),
            ("client_secret", secret.to_owned()),
            ("scope", "https://graph.microsoft.com/.default".to_owned()),
            ("grant_type", "client_credentials".to_owned()),
        ]
    };
    let ok: Value = client
        .http
        .post(&info.token_url)
        .form(&form(&info.client_secret))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(ok["token_type"], "Bearer");
    assert_eq!(ok["expires_in"], 3599);
    assert_eq!(ok["ext_expires_in"], 3599);
    let bad = client
        .http
        .post(&info.token_url)
        .form(&form("wrong"))
        .send()
        .await
        .expect("send");
    assert_eq!(bad.status().as_u16(), 401);
    let bad: Value = bad.json().await.expect("json");
    assert_eq!(bad["error"], "invalid_client");
    assert_eq!(bad["error_codes"], json!([7000215]));
    assert!(
        bad["error_description"]
            .as_str()
            .expect("text")
            .starts_with("AADSTS7000215:")
    );
    for key in ["timestamp", "trace_id", "correlation_id"] {
        assert!(bad[key].is_string(), "{key} in {bad}");
    }
    let unknown = client
        .http
        .post(format!(
            "{}/nope/oauth2/v2.0/token",
            client.emulator.authority_host()
        ))
        .form(&form(&info.client_secret))
        .send()
        .await
        .expect("send");
    assert_eq!(unknown.status().as_u16(), 400);
    let unknown: Value = unknown.json().await.expect("json");
    assert_eq!(unknown["error_codes"], json!([90002]));
}

#[tokio::test]
async fn graph_refuses_missing_bad_and_expired_tokens() {
    let client = start(EmulatorConfig::default()).await;
    let url = format!(
        "{}/sites/contoso.sharepoint.com:/sites/projects",
        client.emulator.base_url()
    );
    let missing = client.http.get(&url).send().await.expect("send");
    assert_eq!(missing.status().as_u16(), 401);
    assert_graph_error(
        &missing.json().await.expect("json"),
        "InvalidAuthenticationToken",
    );
    let bad = client
        .http
        .get(&url)
        .bearer_auth("nonsense")
        .send()
        .await
        .expect("send");
    assert_eq!(bad.status().as_u16(), 401);
    client.emulator.expire_tokens();
    let (status, _, body) = client
        .call(
            reqwest::Method::GET,
            "/sites/contoso.sharepoint.com:/sites/projects",
            None,
        )
        .await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("expired")
    );
}

#[tokio::test]
async fn sites_by_path_and_id() {
    let client = start(EmulatorConfig::default()).await;
    let (_, headers, site) = client
        .call(
            reqwest::Method::GET,
            "/sites/contoso.sharepoint.com:/sites/projects",
            None,
        )
        .await;
    let id = site["id"].as_str().expect("id");
    let parts: Vec<&str> = id.split(',').collect();
    assert_eq!(parts.len(), 3, "composite id hostname,collection,web: {id}");
    assert_eq!(parts[0], "contoso.sharepoint.com");
    assert_eq!(
        site["webUrl"],
        "https://contoso.sharepoint.com/sites/projects"
    );
    for key in [
        "displayName",
        "name",
        "createdDateTime",
        "lastModifiedDateTime",
    ] {
        assert!(site[key].is_string(), "{key}");
    }
    assert!(headers.contains_key("request-id"));
    let (status, _, again) = client
        .call(reqwest::Method::GET, &format!("/sites/{id}"), None)
        .await;
    assert_eq!((status, &again["id"]), (200, &site["id"]));
    let (status, _, missing) = client
        .call(
            reqwest::Method::GET,
            "/sites/contoso.sharepoint.com:/sites/nope",
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_graph_error(&missing, "itemNotFound");
    assert_eq!(
        missing["error"]["message"],
        "Requested site could not be found"
    );
}

#[tokio::test]
async fn lists_and_columns() {
    let client = start(EmulatorConfig::default()).await;
    let site = client.site_id().await;
    let list = client.list(&site, "Books", true).await;
    let (status, _, by_name) = client
        .call(
            reqwest::Method::GET,
            &format!("/sites/{site}/lists/Books"),
            None,
        )
        .await;
    assert_eq!((status, by_name["id"].as_str()), (200, Some(list.as_str())));
    assert_eq!(by_name["list"]["template"], "genericList");
    let (status, _, duplicate) = client
        .call(
            reqwest::Method::POST,
            &format!("/sites/{site}/lists"),
            Some(json!({"displayName": "Books"})),
        )
        .await;
    assert_eq!(status, 409);
    assert_graph_error(&duplicate, "nameAlreadyExists");
    let (status, _, named) = client
        .call(
            reqwest::Method::POST,
            &format!("/sites/{site}/lists"),
            Some(json!({"name": "x", "displayName": "X"})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        named["error"]["message"]
            .as_str()
            .expect("message")
            .contains("provide 'displayName'")
    );

    let (_, _, columns) = client
        .call(
            reqwest::Method::GET,
            &format!("/sites/{site}/lists/{list}/columns"),
            None,
        )
        .await;
    let names: Vec<&str> = columns["value"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(names.contains(&"Title") && names.contains(&"Count"));
    assert!(
        !names.contains(&"Key"),
        "hidden columns are not listed by default"
    );
    let (_, _, with_hidden) = client
        .call(
            reqwest::Method::GET,
            &format!("/sites/{site}/lists/{list}/columns?$select=name,hidden"),
            None,
        )
        .await;
    assert!(
        with_hidden["value"]
            .as_array()
            .expect("array")
            .iter()
            .any(|c| c["name"] == "Key")
    );
    let title = columns["value"]
        .as_array()
        .expect("array")
        .iter()
        .find(|c| c["name"] == "Title")
        .expect("title")
        .clone();
    assert_eq!(title["text"]["maxLength"], 255);
    let (status, _, column) = client
        .call(
            reqwest::Method::POST,
            &format!("/sites/{site}/lists/{list}/columns"),
            Some(json!({"name": "Done", "boolean": {}})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(column["displayName"], "Done");
    assert!(column["id"].is_string());
}

#[tokio::test]
async fn items_crud_validation_etags_and_filters() {
    let client = start(EmulatorConfig::default()).await;
    let site = client.site_id().await;
    let list = client.list(&site, "Books", true).await;
    let items = format!("/sites/{site}/lists/{list}/items");
    let (status, _, created) = client
        .call(
            reqwest::Method::POST,
            &items,
            Some(json!({"fields": {"Title": "Widget", "Count": 32, "Key": "k1"}})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["id"], "1", "item ids are strings holding integers");
    assert_eq!(created["fields"]["Title"], "Widget");
    assert_eq!(created["fields"]["id"], "1");
    assert_eq!(created["fields"]["Attachments"], false);
    assert_eq!(created["fields"]["ItemChildCount"], "0");
    assert!(
        created["fields"].get("Key").is_none(),
        "hidden values only when selected"
    );
    let etag = created["eTag"].as_str().expect("etag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with(",1\""), "{etag}");

    let (status, _, second) = client
        .call(
            reqwest::Method::POST,
            &items,
            Some(json!({"fields": {"Title": "Gadget", "Key": "k2"}})),
        )
        .await;
    assert_eq!((status, second["id"].as_str()), (201, Some("2")));
    let (status, _, dup) = client
        .call(
            reqwest::Method::POST,
            &items,
            Some(json!({"fields": {"Key": "k1"}})),
        )
        .await;
    assert_eq!(status, 409, "unique column refuses duplicates: {dup}");
    let (status, _, unknown) = client
        .call(
            reqwest::Method::POST,
            &items,
            Some(json!({"fields": {"Nope": 1}})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        unknown["error"]["message"],
        "Field 'Nope' is not recognized"
    );
    let (status, _, wrong) = client
        .call(
            reqwest::Method::POST,
            &items,
            Some(json!({"fields": {"Count": "many"}})),
        )
        .await;
    assert_eq!(status, 400);
    assert_graph_error(&wrong, "invalidRequest");
    let (status, _, long) = client
        .call(
            reqwest::Method::POST,
            &items,
            Some(json!({"fields": {"Title": "x".repeat(256)}})),
        )
        .await;
    assert_eq!(status, 400, "{long}");
    let (status, _, _) = client
        .call(
            reqwest::Method::POST,
            &items,
            Some(json!({"fields": {"Created": "2020-01-01T00:00:00Z"}})),
        )
        .await;
    assert_eq!(status, 400, "system fields are read-only");

    // Filter on the indexed key column; non-indexed filters need the Prefer header.
    let (status, _, found) = client
        .call(
            reqwest::Method::GET,
            &format!("{items}?$filter=fields/Key eq 'k2'&$expand=fields(select=Key)"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["value"].as_array().expect("array").len(), 1);
    assert_eq!(found["value"][0]["fields"]["Key"], "k2");
    let (status, _, refused) = client
        .call(
            reqwest::Method::GET,
            &format!("{items}?$filter=fields/Title eq 'Gadget'"),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        refused["error"]["message"]
            .as_str()
            .expect("message")
            .contains("HonorNonIndexedQueriesWarningMayFailRandomly")
    );
    let (status, _, _) = client
        .call(
            reqwest::Method::GET,
            &format!("{items}?$filter=Title eq 'Gadget'"),
            None,
        )
        .await;
    assert_eq!(status, 400, "field filters need the fields/ prefix");

    // PATCH fields: 412 on a stale eTag, the whole field set back, null clears.
    let (status, _, _) = client
        .call(
            reqwest::Method::PATCH,
            &format!("{items}/1/fields"),
            Some(json!({"Count": 1})),
        )
        .await;
    assert_eq!(status, 200);
    let stale = client
        .http
        .patch(format!("{}{items}/1/fields", client.emulator.base_url()))
        .bearer_auth(&client.token)
        .header("If-Match", &etag)
        .json(&json!({"Count": 2}))
        .send()
        .await
        .expect("send");
    assert_eq!(stale.status().as_u16(), 412);
    assert_graph_error(&stale.json().await.expect("json"), "resourceModified");
    let (status, _, fields) = client
        .call(
            reqwest::Method::PATCH,
            &format!("{items}/1/fields"),
            Some(json!({"Count": null})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(fields["Title"], "Widget");
    assert!(fields.get("Count").is_none(), "a cleared value is absent");

    let (status, _, body) = client
        .call(reqwest::Method::DELETE, &format!("{items}/1"), None)
        .await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, _, gone) = client
        .call(reqwest::Method::DELETE, &format!("{items}/1"), None)
        .await;
    assert_eq!(status, 404);
    assert_graph_error(&gone, "itemNotFound");
    let (_, _, third) = client
        .call(
            reqwest::Method::POST,
            &items,
            Some(json!({"fields": {"Title": "Again"}})),
        )
        .await;
    assert_eq!(third["id"], "3", "ids are never reused");
}

#[tokio::test]
async fn paging_follows_next_links() {
    let client = start(EmulatorConfig::default()).await;
    let site = client.site_id().await;
    let list = client.list(&site, "Many", false).await;
    let items = format!("/sites/{site}/lists/{list}/items");
    for i in 0..7 {
        client
            .call(
                reqwest::Method::POST,
                &items,
                Some(json!({"fields": {"Title": format!("t{i}")}})),
            )
            .await;
    }
    let mut url = format!("{items}?$top=3&$expand=fields");
    let mut seen = Vec::new();
    loop {
        let (status, _, page) = client.call(reqwest::Method::GET, &url, None).await;
        assert_eq!(status, 200);
        seen.extend(
            page["value"]
                .as_array()
                .expect("array")
                .iter()
                .map(|i| i["fields"]["Title"].as_str().expect("title").to_owned()),
        );
        match page["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(next.contains("$skiptoken="), "{next}");
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(seen, (0..7).map(|i| format!("t{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn batch_limits_ids_and_per_request_status() {
    let client = start(EmulatorConfig::default()).await;
    let site = client.site_id().await;
    let list = client.list(&site, "Batch", true).await;
    let create = |id: usize| json!({"id": id.to_string(), "method": "POST", "url": format!("/sites/{site}/lists/{list}/items"), "headers": {"Content-Type": "application/json"}, "body": {"fields": {"Title": format!("b{id}"), "Key": format!("k{id}")}}});
    let (status, _, too_many) = client
        .call(
            reqwest::Method::POST,
            "/$batch",
            Some(json!({"requests": (0..21).map(create).collect::<Vec<_>>()})),
        )
        .await;
    assert_eq!(status, 400, "{too_many}");
    let (status, _, _) = client
        .call(
            reqwest::Method::POST,
            "/$batch",
            Some(json!({"requests": [create(1), create(1)]})),
        )
        .await;
    assert_eq!(status, 400, "duplicate ids");
    let requests = vec![
        create(1),
        create(1)
            .as_object()
            .map(|o| {
                let mut o = o.clone();
                o.insert("id".into(), json!("2"));
                Value::Object(o)
            })
            .expect("object"),
        json!({"id": "3", "method": "DELETE", "url": format!("/sites/{site}/lists/{list}/items/99")}),
        json!({"id": "4", "method": "GET", "url": format!("/sites/{site}/lists/{list}/items/1"), "dependsOn": ["3"]}),
    ];
    let (status, _, batch) = client
        .call(
            reqwest::Method::POST,
            "/$batch",
            Some(json!({"requests": requests})),
        )
        .await;
    assert_eq!(status, 200);
    let statuses: Vec<(String, u64)> = batch["responses"]
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().expect("id").to_owned(),
                r["status"].as_u64().expect("status"),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("1".into(), 201),
            ("2".into(), 409),
            ("3".into(), 404),
            ("4".into(), 424)
        ]
    );
    assert_eq!(batch["responses"][0]["body"]["id"], "1");
    assert_eq!(client.emulator.counts().get("item.create", 201), 1);
}

#[tokio::test]
async fn throttling_rewards_clients_that_honour_retry_after() {
    let config = EmulatorConfig {
        throttle: ThrottleConfig {
            enabled: true,
            resource_units_per_minute: 10,
            ..ThrottleConfig::default()
        },
        ..EmulatorConfig::default()
    };
    let client = start(config).await;
    let path = "/sites/contoso.sharepoint.com:/sites/projects";
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let (status, headers, body) = client.call(reqwest::Method::GET, path, None).await;
        if status == 429 {
            assert!(headers.contains_key("retry-after"));
            assert_graph_error(&body, "TooManyRequests");
        }
        statuses.push(status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "{statuses:?}"
    );
    let counts = client.emulator.counts();
    assert!(
        counts.before_retry_after >= 1,
        "the second 429 arrived before the advertised time: {counts:?}"
    );
}

#[tokio::test]
async fn injected_faults_are_deterministic() {
    let run = || async {
        let client = start(EmulatorConfig::default()).await;
        client.emulator.set_faults(FaultConfig {
            seed: 7,
            rate_429: 0.3,
            rate_503: 0.2,
            retry_after_seconds: 0.5,
            kinds: Vec::new(),
            ..FaultConfig::default()
        });
        let mut statuses = Vec::new();
        for _ in 0..20 {
            statuses.push(
                client
                    .call(
                        reqwest::Method::GET,
                        "/sites/contoso.sharepoint.com:/sites/projects",
                        None,
                    )
                    .await
                    .0,
            );
        }
        statuses
    };
    let (a, b) = (run().await, run().await);
    assert_eq!(a, b);
    assert!(
        a.contains(&429) && a.contains(&503) && a.contains(&200),
        "{a:?}"
    );
}

#[tokio::test]
async fn data_file_survives_restarts() {
    let dir = std::env::temp_dir().join(format!("sb-emulator-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("data.json");
    let _ = std::fs::remove_file(&file);
    let config = EmulatorConfig {
        data_file: Some(file.clone()),
        ..EmulatorConfig::default()
    };
    let client = start(config.clone()).await;
    let site = client.site_id().await;
    client.list(&site, "Kept", false).await;
    client.emulator.shutdown().await;
    let again = start(config).await;
    let (status, _, list) = again
        .call(
            reqwest::Method::GET,
            &format!("/sites/{site}/lists/Kept"),
            None,
        )
        .await;
    assert_eq!((status, list["displayName"].as_str()), (200, Some("Kept")));
    let _ = std::fs::remove_dir_all(dir);
}
