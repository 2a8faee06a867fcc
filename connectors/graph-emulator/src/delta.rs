//! `GET …/items/delta` (graph-api.md §6). A delta token is a position in the list's change
//! sequence; each round reports the latest state of every item changed since the token and the
//! items deleted since then, paged with `@odata.nextLink`, and ends with an `@odata.deltaLink`
//! for the next round.
//!
//! Tokens are opaque to clients but self-contained here (base64url JSON), so they survive an
//! emulator restart with `--data`, as the service's survive reconnects. A token is refused with
//! `410 Gone` and a `Location` that starts a fresh enumeration when it is older than the
//! configured lifetime or the list's delta state was reset.

use base64::Engine as _;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::EmulatorConfig;
use crate::graph::{Request, Response, graph_error, graph_error_with_inner, parse_expand, query};
use crate::state::{List, Site};

/// What a delta link carries. Field names are short because the token travels in every URL.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Token {
    /// List id.
    l: String,
    /// The list's delta generation when the token was issued.
    g: u64,
    /// Changes after this sequence number are reported.
    s: u64,
    /// The end of the round, fixed on its first page (absent in a deltaLink: the round starts
    /// when the link is followed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<u64>,
    /// Paging position inside the round: the last item id sent.
    #[serde(default)]
    a: i64,
    /// `$expand` of the first call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<String>,
    /// `$top` of the first call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<usize>,
    /// When the token was issued (Unix seconds).
    i: i64,
}

impl Token {
    fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(text: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Answers one delta request against `list`.
pub fn delta(
    site: &Site,
    list: &List,
    request: &Request,
    config: &EmulatorConfig,
    base_url: &str,
) -> Response {
    let now = Utc::now().timestamp();
    let link = |token: &Token| {
        format!(
            "{base_url}/sites/{}/lists/{}/items/delta?token={}",
            site.id,
            list.id,
            token.encode()
        )
    };
    let expand = query(request, "$expand").or_else(|| query(request, "expand"));
    let top = match query(request, "$top") {
        Some(text) => match text.parse::<usize>() {
            Ok(n) if n > 0 => Some(n),
            _ => return graph_error(400, "invalidRequest", "Invalid value for $top."),
        },
        None => None,
    };
    let fresh = |expand: Option<String>, top: Option<usize>| Token {
        l: list.id.clone(),
        g: list.delta_generation,
        s: 0,
        u: Some(list.change_seq),
        a: 0,
        x: expand,
        t: top,
        i: now,
    };
    let token = match query(request, "token").as_deref() {
        None => fresh(expand, top),
        Some("latest") => {
            let latest = Token {
                s: list.change_seq,
                u: None,
                ..fresh(expand, top)
            };
            return Response::json(
                200,
                json!({
                    "@odata.context": format!("{base_url}/$metadata#Collection(listItem)"),
                    "value": [],
                    "@odata.deltaLink": link(&latest),
                }),
            );
        }
        Some(text) => {
            let Some(token) = Token::decode(text).filter(|t| t.l == list.id) else {
                return graph_error(
                    400,
                    "invalidRequest",
                    "The delta token is not valid for this list.",
                );
            };
            let lifetime =
                i64::try_from(config.behaviour.delta_token_lifetime_seconds).unwrap_or(i64::MAX);
            let stale = token.g != list.delta_generation
                || now.saturating_sub(token.i) > lifetime
                || token.s > list.change_seq;
            if stale {
                let restart = fresh(token.x.clone(), token.t);
                return graph_error_with_inner(
                    410,
                    &config.behaviour.delta_resync_code,
                    "Resync required. Replace any local items with the server's version (including deletes) if you're sure that the service was up to date with your local changes when you last sync'd. Upload any local changes that the server doesn't know about.",
                    "resyncRequired",
                )
                .header("Location", link(&restart));
            }
            match token.u {
                Some(_) => token,
                // A deltaLink: the round ends at the current change.
                None => Token {
                    u: Some(list.change_seq),
                    a: 0,
                    i: now,
                    ..token
                },
            }
        }
    };
    let upto = token.u.unwrap_or(list.change_seq);
    // Replays: the service may send an item again; clients must merge idempotently.
    let since = if token.s == 0 {
        0
    } else {
        token
            .s
            .saturating_sub(config.behaviour.delta_replay_changes)
    };
    let (expand_fields, select) = parse_expand(token.x.as_deref());
    let page_size = token
        .t
        .unwrap_or(config.default_page_size)
        .min(config.max_page_size);

    // Changed items and deletions, merged in item-id order (ids are unique across both).
    let changed = list
        .items
        .range(token.a + 1..)
        .filter(|(_, item)| item.changed_seq > since && item.changed_seq <= upto)
        .map(|(id, _)| (*id, false));
    let deleted = list
        .tombstones
        .range(token.a + 1..)
        // Items created and deleted inside the window are not reported.
        .filter(|(_, t)| t.deleted_seq > since && t.deleted_seq <= upto && t.created_seq <= since)
        .map(|(id, _)| (*id, true));
    let mut entries: Vec<(i64, bool)> = changed.chain(deleted).collect();
    entries.sort_unstable();
    let more = entries.len() > page_size;
    entries.truncate(page_size);

    let value: Vec<Value> = entries
        .iter()
        .filter_map(|(id, deleted)| {
            if *deleted {
                Some(json!({
                    "id": id.to_string(),
                    "parentReference": {"siteId": site.id},
                    "contentType": {"id": "0x0100", "name": "Item"},
                    "deleted": {"state": "deleted"},
                }))
            } else {
                list.items
                    .get(id)
                    .map(|item| item.to_json(site, list, expand_fields, select.as_deref()))
            }
        })
        .collect();
    let mut body = json!({
        "@odata.context": format!("{base_url}/$metadata#Collection(listItem)"),
        "value": value,
    });
    let (key, next) = match (more, entries.last()) {
        (true, Some((last, _))) => (
            "@odata.nextLink",
            Token {
                u: Some(upto),
                a: *last,
                i: now,
                ..token
            },
        ),
        _ => (
            "@odata.deltaLink",
            Token {
                s: upto,
                u: None,
                a: 0,
                i: now,
                ..token
            },
        ),
    };
    if let Some(map) = body.as_object_mut() {
        map.insert(key.to_owned(), Value::String(link(&next)));
    }
    Response::json(200, body)
}
