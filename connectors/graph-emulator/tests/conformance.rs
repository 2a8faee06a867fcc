//! Conformance of the emulator with shared/notes/graph-api.md, over real HTTP: bodies compared
//! field by field with the spec's examples (ids and timestamps aside), error bodies and headers.

use serde_json::{Value, json};
use syncbridge_graph_emulator::{
    BehaviourConfig, Emulator, EmulatorConfig, FaultConfig, RunningEmulator, ThrottleConfig,
};

struct Client {
    http: reqwest::Client,
    emulator: RunningEmulator,
    token: String,
}

async fn start(config: EmulatorConfig) -> Client {
    let emulator = Emulator::start_local(config).await.expect("starts");
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
        vec![("1".into(), 201), ("2".into(), 409), ("3".into(), 404)]
    );
    assert_eq!(batch["responses"][0]["body"]["id"], "1");
    assert_eq!(client.emulator.counts().get("item.create", 201), 1);

    // A fully sequential batch: a failure cascades as 424 Failed Dependency.
    let missing = format!("/sites/{site}/lists/{list}/items/99");
    let (status, _, batch) = client
        .call(
            reqwest::Method::POST,
            "/$batch",
            Some(json!({"requests": [
                {"id": "a", "method": "GET", "url": missing},
                {"id": "b", "method": "GET", "url": missing, "dependsOn": ["a"]},
                {"id": "c", "method": "GET", "url": missing, "dependsOn": ["B"]},
            ]})),
        )
        .await;
    assert_eq!(status, 200);
    let statuses: Vec<u64> = batch["responses"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["status"].as_u64())
        .collect();
    assert_eq!(statuses, [404, 424, 424]);

    // Mixed graphs and forward references are refused whole.
    let (status, _, body) = client
        .call(
            reqwest::Method::POST,
            "/$batch",
            Some(json!({"requests": [
                {"id": "a", "method": "GET", "url": missing},
                {"id": "b", "method": "GET", "url": missing},
                {"id": "c", "method": "GET", "url": missing, "dependsOn": ["a"]},
            ]})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        "Batch should be either fully sequential or fully parallel."
    );
    let (status, _, body) = client
        .call(
            reqwest::Method::POST,
            "/$batch",
            Some(json!({"requests": [
                {"id": "a", "method": "GET", "url": missing, "dependsOn": ["b"]},
                {"id": "b", "method": "GET", "url": missing},
            ]})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Invalid dependency for request Id a")),
        "{body}"
    );

    // Throttling inside a batch: each request is charged on its own; the batch is still 200
    // and the throttled ones carry 429 with Retry-After in their own headers (§7.2).
    client.emulator.set_throttle(ThrottleConfig {
        enabled: true,
        resource_units_per_minute: 6,
        ..ThrottleConfig::default()
    });
    let (status, _, batch) = client
        .call(
            reqwest::Method::POST,
            "/$batch",
            Some(json!({"requests": (10..15).map(create).collect::<Vec<_>>()})),
        )
        .await;
    assert_eq!(status, 200, "{batch}");
    let responses = batch["responses"].as_array().expect("array");
    let created = responses.iter().filter(|r| r["status"] == 201).count();
    let throttled: Vec<&Value> = responses.iter().filter(|r| r["status"] == 429).collect();
    assert_eq!((created, throttled.len()), (3, 2), "{batch}");
    for response in throttled {
        assert!(response["headers"]["Retry-After"].is_string(), "{response}");
        assert_eq!(response["body"]["error"]["code"], "TooManyRequests");
    }
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
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
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

/// Follows one delta round from `url` to its deltaLink: (entries in order, deltaLink, pages).
async fn delta_round(client: &Client, url: &str) -> (Vec<Value>, String, usize) {
    let mut url = url.to_owned();
    let mut entries = Vec::new();
    let mut pages = 0;
    loop {
        let (status, _, page) = client.call(reqwest::Method::GET, &url, None).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        assert!(
            page["@odata.context"]
                .as_str()
                .is_some_and(|c| c.ends_with("$metadata#Collection(listItem)")),
            "{page}"
        );
        entries.extend(page["value"].as_array().expect("value").iter().cloned());
        match (
            page["@odata.nextLink"].as_str(),
            page["@odata.deltaLink"].as_str(),
        ) {
            (Some(next), None) => url = next.to_owned(),
            (None, Some(delta)) => return (entries, delta.to_owned(), pages),
            _ => panic!("a delta page carries exactly one of nextLink and deltaLink: {page}"),
        }
    }
}

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

#[tokio::test]
async fn delta_enumerates_then_reports_changes_and_deletions() {
    let client = start(EmulatorConfig::default()).await;
    let site = client.site_id().await;
    let list = client.list(&site, "Tracked", true).await;
    let items = format!("/sites/{site}/lists/{list}/items");
    for i in 1..=5 {
        let (status, _, _) = client
            .call(
                reqwest::Method::POST,
                &items,
                Some(json!({"fields": {"Title": format!("t{i}"), "Key": format!("k{i}")}})),
            )
            .await;
        assert_eq!(status, 201);
    }

    // Initial enumeration: every item, paged by the first call's $top, fields expanded on every
    // page although only the first call asked (§6.1: options are encoded into the links).
    let (entries, delta_link, pages) =
        delta_round(&client, &format!("{items}/delta?$top=2&$expand=fields")).await;
    assert_eq!(pages, 3);
    let ids: Vec<&str> = entries.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5"]);
    assert!(entries.iter().all(|e| e["fields"]["Title"].is_string()));
    // §6.2 first page: the item properties of the spec's example.
    for key in [
        "createdDateTime",
        "eTag",
        "id",
        "lastModifiedDateTime",
        "webUrl",
        "createdBy",
        "parentReference",
        "contentType",
    ] {
        assert!(
            entries[0].get(key).is_some(),
            "{key} missing: {}",
            entries[0]
        );
    }
    assert!(delta_link.starts_with(&client.emulator.base_url()));
    assert!(delta_link.contains("/items/delta?token="), "{delta_link}");

    // Nothing changed: an empty round with a new deltaLink.
    let (entries, delta_link, _) = delta_round(&client, &delta_link).await;
    assert!(entries.is_empty(), "{entries:?}");

    // Update 1 twice, delete 2, create 6 and delete it again, create 7.
    for title in ["first edit", "second edit"] {
        let (status, _, _) = client
            .call(
                reqwest::Method::PATCH,
                &format!("{items}/1/fields"),
                Some(json!({"Title": title})),
            )
            .await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        client
            .call(reqwest::Method::DELETE, &format!("{items}/2"), None)
            .await
            .0,
        204
    );
    for key in ["k6", "k7"] {
        client
            .call(
                reqwest::Method::POST,
                &items,
                Some(json!({"fields": {"Title": key, "Key": key}})),
            )
            .await;
    }
    client
        .call(reqwest::Method::DELETE, &format!("{items}/6"), None)
        .await;

    let (entries, next_link, _) = delta_round(&client, &delta_link).await;
    let ids: Vec<&str> = entries.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(
        ids,
        ["1", "2", "7"],
        "latest state once per item; created-and-deleted item 6 not reported"
    );
    assert_eq!(entries[0]["fields"]["Title"], "second edit");
    // §6.2 last page: a deletion is the id, the site, the content type and the deleted facet,
    // without fields.
    assert_eq!(
        keys(&entries[1]),
        ["contentType", "deleted", "id", "parentReference"]
    );
    assert_eq!(entries[1]["deleted"], json!({"state": "deleted"}));
    assert_eq!(entries[1]["parentReference"], json!({"siteId": site}));
    assert_eq!(entries[1]["contentType"]["name"], "Item");

    // token=latest: no items, a deltaLink from now on.
    let (status, _, latest) = client
        .call(
            reqwest::Method::GET,
            &format!("{items}/delta?token=latest"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(latest["value"], json!([]));
    let latest_link = latest["@odata.deltaLink"].as_str().expect("deltaLink");
    client
        .call(
            reqwest::Method::PATCH,
            &format!("{items}/3/fields"),
            Some(json!({"Title": "after latest"})),
        )
        .await;
    let (entries, _, _) = delta_round(&client, latest_link).await;
    let ids: Vec<&str> = entries.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids, ["3"]);
    // The round before `latest` sees the same change.
    let (entries, _, _) = delta_round(&client, &next_link).await;
    assert_eq!(entries.len(), 1);

    // Cost and counts: delta requests are their own kind.
    let counts = client.emulator.counts();
    assert!(counts.get("item.delta", 200) >= 8, "{counts:?}");
}

#[tokio::test]
async fn stale_delta_tokens_get_410_with_a_fresh_enumeration() {
    let client = start(EmulatorConfig::default()).await;
    let site = client.site_id().await;
    let list = client.list(&site, "Stale", false).await;
    let items = format!("/sites/{site}/lists/{list}/items");
    client
        .call(
            reqwest::Method::POST,
            &items,
            Some(json!({"fields": {"Title": "one"}})),
        )
        .await;
    let (_, delta_link, _) = delta_round(&client, &format!("{items}/delta?expand=fields")).await;

    client.emulator.reset_delta();
    let (status, headers, body) = client.call(reqwest::Method::GET, &delta_link, None).await;
    assert_eq!(status, 410, "{body}");
    assert_graph_error(&body, "resyncChangesApplyDifferences");
    assert_eq!(body["error"]["innerError"]["code"], "resyncRequired");
    let location = headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location header")
        .to_owned();
    // The Location starts a fresh enumeration that keeps the original options.
    let (entries, _, _) = delta_round(&client, &location).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["fields"]["Title"], "one");

    // Garbage is a bad request, not a resync.
    let (status, _, body) = client
        .call(
            reqwest::Method::GET,
            &format!("{items}/delta?token=not-a-token"),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_graph_error(&body, "invalidRequest");

    // Token lifetime (§14) and the other resync code are settings.
    client.emulator.set_behaviour(BehaviourConfig {
        delta_token_lifetime_seconds: 1,
        delta_resync_code: "resyncChangesUploadDifferences".into(),
        ..BehaviourConfig::default()
    });
    let (_, delta_link, _) = delta_round(&client, &format!("{items}/delta")).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, _, body) = client.call(reqwest::Method::GET, &delta_link, None).await;
    assert_eq!(status, 410);
    assert_graph_error(&body, "resyncChangesUploadDifferences");
}

#[tokio::test]
async fn delta_replays_are_a_setting() {
    let client = start(EmulatorConfig::default()).await;
    let site = client.site_id().await;
    let list = client.list(&site, "Replay", false).await;
    let items = format!("/sites/{site}/lists/{list}/items");
    for title in ["a", "b"] {
        client
            .call(
                reqwest::Method::POST,
                &items,
                Some(json!({"fields": {"Title": title}})),
            )
            .await;
    }
    let (_, quiet_link, _) = delta_round(&client, &format!("{items}/delta")).await;
    client.emulator.set_behaviour(BehaviourConfig {
        delta_replay_changes: 1,
        ..BehaviourConfig::default()
    });
    let (entries, _, _) = delta_round(&client, &quiet_link).await;
    let ids: Vec<&str> = entries.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids, ["2"], "the last change before the token is sent again");
}

/// One GET returning (status, header value by name).
async fn get_with_headers(client: &Client, path: &str) -> (u16, reqwest::header::HeaderMap) {
    let (status, headers, _) = client.call(reqwest::Method::GET, path, None).await;
    (status, headers)
}

fn header(headers: &reqwest::header::HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.parse().ok()
}

#[tokio::test]
async fn rate_limit_headers_appear_from_80_percent_of_the_budget() {
    let config = EmulatorConfig {
        throttle: ThrottleConfig {
            enabled: true,
            resource_units_per_minute: 10,
            ..ThrottleConfig::default()
        },
        ..EmulatorConfig::default()
    };
    let client = start(config).await;
    // A site read costs 1 resource unit.
    let path = "/sites/contoso.sharepoint.com:/sites/projects";
    for used in 1..=10u64 {
        let (status, headers) = get_with_headers(&client, path).await;
        assert_eq!(status, 200);
        if used < 8 {
            assert!(headers.get("ratelimit-limit").is_none(), "at {used}/10");
        } else {
            assert_eq!(header(&headers, "ratelimit-limit"), Some(10));
            assert_eq!(header(&headers, "ratelimit-remaining"), Some(10 - used));
            assert!(header(&headers, "ratelimit-reset").is_some_and(|r| r <= 60));
        }
    }
    let (status, headers) = get_with_headers(&client, path).await;
    assert_eq!(status, 429);
    let retry_after = header(&headers, "retry-after").expect("Retry-After");
    assert_eq!(header(&headers, "ratelimit-remaining"), Some(0));
    assert_eq!(header(&headers, "ratelimit-reset"), Some(retry_after));

    // An injected 429 is "another limit": Retry-After without RateLimit headers (§8.4).
    let client = start(EmulatorConfig::default()).await;
    client.emulator.set_faults(FaultConfig {
        rate_429: 1.0,
        retry_after_seconds: 9.0,
        ..FaultConfig::default()
    });
    let (status, headers) = get_with_headers(&client, path).await;
    assert_eq!(status, 429);
    assert_eq!(header(&headers, "retry-after"), Some(9));
    assert!(headers.get("ratelimit-limit").is_none());

    // "503 when told to".
    let config = EmulatorConfig {
        throttle: ThrottleConfig {
            enabled: true,
            resource_units_per_minute: 1,
            respond_with: 503,
            ..ThrottleConfig::default()
        },
        ..EmulatorConfig::default()
    };
    let client = start(config).await;
    assert_eq!(get_with_headers(&client, path).await.0, 200);
    let (status, _, body) = client.call(reqwest::Method::GET, path, None).await;
    assert_eq!(status, 503);
    assert_graph_error(&body, "serviceNotAvailable");
}

#[tokio::test]
async fn honouring_retry_after_completes_and_ignoring_it_escalates() {
    let config = EmulatorConfig {
        throttle: ThrottleConfig {
            enabled: true,
            resource_units_per_minute: 20,
            window_seconds: 1,
            ..ThrottleConfig::default()
        },
        ..EmulatorConfig::default()
    };
    // A polite client: 25 creates (50 RU, 2.5 windows), waiting out every 429.
    let polite = start(config.clone()).await;
    let site = polite.site_id().await;
    let list = polite.list(&site, "Polite", false).await;
    let items = format!("/sites/{site}/lists/{list}/items");
    let mut throttled = 0;
    for i in 0..25 {
        loop {
            let (status, headers, body) = polite
                .call(
                    reqwest::Method::POST,
                    &items,
                    Some(json!({"fields": {"Title": format!("p{i}")}})),
                )
                .await;
            if status == 201 {
                break;
            }
            assert_eq!(status, 429, "{body}");
            throttled += 1;
            let wait = header(&headers, "retry-after").expect("Retry-After");
            tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
        }
    }
    let counts = polite.emulator.counts();
    assert_eq!(counts.get("item.create", 201), 25);
    assert!(throttled >= 1, "the budget was reached");
    assert_eq!(counts.before_retry_after, 0, "{counts:?}");

    // An impolite client retries after its own 10 ms: each early request lengthens the wait.
    let rude = start(config).await;
    let path = "/sites/contoso.sharepoint.com:/sites/projects";
    let mut waits = Vec::new();
    for _ in 0..30 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let (status, headers) = get_with_headers(&rude, path).await;
        if status == 429 {
            waits.push(header(&headers, "retry-after").expect("Retry-After"));
        }
    }
    assert!(waits.len() >= 8, "{waits:?}");
    assert!(
        waits.last() > waits.first() && waits.windows(2).all(|w| w[1] >= w[0]),
        "Retry-After escalates for a client that ignores it: {waits:?}"
    );
    let counts = rude.emulator.counts();
    assert_eq!(counts.before_retry_after, waits.len() as u64 - 1);
    assert_eq!(counts.get("site.get", 429), waits.len() as u64);
}

#[tokio::test]
async fn server_errors_latency_drops_and_early_token_expiry() {
    let client = start(EmulatorConfig::default()).await;
    let site = client.site_id().await;
    let list = client.list(&site, "Faults", false).await;
    let items = format!("/sites/{site}/lists/{list}/items");

    client.emulator.set_faults(FaultConfig {
        rate_500: 1.0,
        ..FaultConfig::default()
    });
    let (status, _, body) = client.call(reqwest::Method::GET, &items, None).await;
    assert_eq!(status, 500);
    assert_graph_error(&body, "generalException");
    client.emulator.set_faults(FaultConfig {
        rate_504: 1.0,
        kinds: vec!["item.list".into()],
        ..FaultConfig::default()
    });
    let (status, _, body) = client.call(reqwest::Method::GET, &items, None).await;
    assert_eq!(status, 504);
    assert_graph_error(&body, "gatewayTimeout");
    assert_eq!(
        client
            .call(reqwest::Method::GET, &format!("/sites/{site}"), None)
            .await
            .0,
        200,
        "faults apply only to the kinds named"
    );

    // Latency.
    client.emulator.set_faults(FaultConfig {
        latency_ms: 300,
        ..FaultConfig::default()
    });
    let started = std::time::Instant::now();
    client.call(reqwest::Method::GET, &items, None).await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));

    // A dropped connection: the create happened, the client cannot read the answer.
    client.emulator.set_faults(FaultConfig {
        rate_drop: 1.0,
        kinds: vec!["item.create".into()],
        ..FaultConfig::default()
    });
    let response = client
        .http
        .post(format!("{}{items}", client.emulator.base_url()))
        .bearer_auth(&client.token)
        .json(&json!({"fields": {"Title": "lost answer"}}))
        .send()
        .await;
    let read = match response {
        Ok(response) => response.json::<Value>().await.map(|_| ()),
        Err(error) => Err(error),
    };
    assert!(read.is_err(), "the body must be cut off");
    client.emulator.set_faults(FaultConfig::default());
    let (_, _, page) = client
        .call(
            reqwest::Method::GET,
            &format!("{items}?expand=fields"),
            None,
        )
        .await;
    assert_eq!(page["value"][0]["fields"]["Title"], "lost answer");
    assert_eq!(client.emulator.counts().kind("item.create.dropped"), 1);

    // Early token expiry: 401 expired, and the token stays unusable.
    client.emulator.set_faults(FaultConfig {
        rate_token_expiry: 1.0,
        kinds: vec!["site.get".into()],
        ..FaultConfig::default()
    });
    let (status, _, body) = client
        .call(reqwest::Method::GET, &format!("/sites/{site}"), None)
        .await;
    assert_eq!(status, 401);
    assert_graph_error(&body, "InvalidAuthenticationToken");
    client.emulator.set_faults(FaultConfig::default());
    assert_eq!(
        client.call(reqwest::Method::GET, &items, None).await.0,
        401,
        "the revoked token stays expired"
    );
}

#[tokio::test]
async fn faults_and_settings_over_the_admin_endpoint() {
    let client = start(EmulatorConfig::default()).await;
    let admin = client.emulator.admin_url();
    let response = client
        .http
        .post(format!("{admin}/faults"))
        .json(&json!({"rate_429": 1.5}))
        .send()
        .await
        .expect("admin");
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("rate_429") && m.contains("between 0.0 and 1.0")),
        "{body}"
    );
    let response = client
        .http
        .post(format!("{admin}/faults"))
        .json(&json!({"seed": 3, "rate_503": 1.0, "retry_after_seconds": 2}))
        .send()
        .await
        .expect("admin");
    assert_eq!(response.status().as_u16(), 200);
    let (status, headers, _) = client
        .call(
            reqwest::Method::GET,
            "/sites/contoso.sharepoint.com:/sites/projects",
            None,
        )
        .await;
    assert_eq!((status, header(&headers, "retry-after")), (503, Some(2)));
    let config: Value = client
        .http
        .get(format!("{admin}/config"))
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    assert_eq!(config["faults"]["rate_503"], 1.0);
    assert_eq!(config["behaviour"]["enforce_choices"], false);
    let response = client
        .http
        .post(format!("{admin}/behaviour"))
        .json(&json!({"delta_resync_code": "resyncEverything"}))
        .send()
        .await
        .expect("admin");
    assert_eq!(response.status().as_u16(), 400);
}

#[tokio::test]
async fn unsettled_behaviours_are_settings() {
    let client = start(EmulatorConfig {
        max_page_size: 3,
        ..EmulatorConfig::default()
    })
    .await;
    let site = client.site_id().await;
    let body = json!({
        "displayName": "Settings",
        "columns": [
            {"name": "Colour", "choice": {"choices": ["Red", "Green"]}},
            {"name": "Owner", "text": {}, "required": true},
            {"name": "Due", "dateTime": {"format": "dateOnly"}},
            {"name": "At", "dateTime": {"format": "dateTime"}},
        ],
    });
    let (status, _, list) = client
        .call(
            reqwest::Method::POST,
            &format!("/sites/{site}/lists"),
            Some(body),
        )
        .await;
    assert_eq!(status, 201);
    let items = format!(
        "/sites/{site}/lists/{}/items",
        list["id"].as_str().expect("id")
    );
    let create = |fields: Value| {
        let client = &client;
        let items = items.clone();
        async move {
            client
                .call(
                    reqwest::Method::POST,
                    &items,
                    Some(json!({"fields": fields})),
                )
                .await
        }
    };

    // Defaults: choices and `required` not enforced; dates in UTC.
    let (status, _, item) =
        create(json!({"Colour": "Blue", "Due": "2024-05-01", "At": "2024-05-01T13:00:00+02:00"}))
            .await;
    assert_eq!(status, 201, "{item}");
    assert_eq!(item["fields"]["Due"], "2024-05-01T00:00:00Z");
    assert_eq!(item["fields"]["At"], "2024-05-01T11:00:00Z");

    client.emulator.set_behaviour(BehaviourConfig {
        enforce_choices: true,
        enforce_required: true,
        site_utc_offset_minutes: -300,
        precondition_failed_message: "custom 412".into(),
        ..BehaviourConfig::default()
    });
    let (status, _, body) = create(json!({"Colour": "Blue", "Owner": "me"})).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("'Blue'") && m.contains("Colour")),
        "{body}"
    );
    let (status, _, body) = create(json!({"Colour": "Red"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["message"], "Field 'Owner' is required.");
    // A date-only value is local midnight of a UTC-5 site, read back in UTC (§10, §12.8).
    let (status, _, item) =
        create(json!({"Colour": "Red", "Owner": "me", "Due": "2024-05-01"})).await;
    assert_eq!(status, 201, "{item}");
    assert_eq!(item["fields"]["Due"], "2024-05-01T05:00:00Z");
    // An instant goes through the site's time zone first: midnight UTC is the evening before
    // in UTC-5, so the date-only value lands a day early (the trap clients must avoid).
    let (status, _, item) =
        create(json!({"Colour": "Red", "Owner": "me", "Due": "2024-05-01T00:00:00Z"})).await;
    assert_eq!(status, 201, "{item}");
    assert_eq!(item["fields"]["Due"], "2024-04-30T05:00:00Z");
    let id = item["id"].as_str().expect("id");
    let response = client
        .http
        .patch(format!("{}{items}/{id}/fields", client.emulator.base_url()))
        .bearer_auth(&client.token)
        .header("If-Match", "\"stale,1\"")
        .json(&json!({"Owner": "you"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(response.status().as_u16(), 412);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["message"], "custom 412");

    // `$top` above the maximum is clamped to it.
    for owner in ["a", "b", "c"] {
        create(json!({"Owner": owner})).await;
    }
    let (_, _, page) = client
        .call(reqwest::Method::GET, &format!("{items}?$top=5000"), None)
        .await;
    assert_eq!(page["value"].as_array().map(Vec::len), Some(3));
    assert!(page["@odata.nextLink"].is_string());
}

#[tokio::test]
async fn the_example_config_loads_with_its_pre_created_list() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/emulator/settings.yaml");
    let config =
        EmulatorConfig::from_file(&path).expect("examples/emulator/settings.yaml is valid");
    let client = start(config).await;
    let site = client.site_id().await;
    let (status, _, list) = client
        .call(
            reqwest::Method::GET,
            &format!("/sites/{site}/lists/Contacts"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{list}");
    let (_, _, columns) = client
        .call(
            reqwest::Method::GET,
            &format!("/sites/{site}/lists/Contacts/columns"),
            None,
        )
        .await;
    let email = columns["value"]
        .as_array()
        .expect("columns")
        .iter()
        .find(|c| c["name"] == "Email")
        .expect("Email column");
    assert_eq!(email["indexed"], true);
    assert_eq!(email["enforceUniqueValues"], true);

    // A bad setting names itself and the fix.
    let dir = std::env::temp_dir().join(format!("sb-emulator-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "faults:\n  rate_504: 2\n").expect("write");
    let error = EmulatorConfig::from_file(&bad).expect_err("rate over 1 refused");
    assert!(
        error.to_string().contains("faults.rate_504")
            && error.to_string().contains("between 0.0 and 1.0"),
        "{error}"
    );
    std::fs::write(
        &bad,
        "sites:\n  - {hostname: h, path: /p, lists: [{displayName: X, name: x}]}\n",
    )
    .expect("write");
    let config = EmulatorConfig::from_file(&bad).expect("parses");
    let error = Emulator::start_local(config)
        .await
        .expect_err("a list body Graph refuses");
    assert!(
        error.to_string().contains("'X' cannot be created"),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
