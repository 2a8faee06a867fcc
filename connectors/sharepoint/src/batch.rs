//! `$batch` bodies and answers, without JSON trees on the hot path.
//!
//! Each sub-request is serialized once, with its id, and a batch body is those texts joined, so
//! a retry of some of them copies bytes instead of rebuilding and cloning JSON values. An answer
//! is read into typed records that borrow from its text; of a sub-answer's body only what a
//! writer uses is read (the created item's id, an error's code and message), not the whole item
//! Graph echoes back for every create.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::pacing::estimate_cost;

/// One `$batch` sub-request, serialized, with its resource-unit cost.
#[derive(Debug, Clone)]
pub struct SubRequest {
    text: String,
    cost: u32,
}

/// What a sub-request carries as its body.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum SubRequestBody<'a> {
    /// A create: `{"fields": {…}}`.
    Fields {
        fields: &'a serde_json::Map<String, serde_json::Value>,
    },
    /// An update of a list item's fields: `{…}`.
    Map(&'a serde_json::Map<String, serde_json::Value>),
}

#[derive(Serialize)]
struct Outgoing<'a> {
    id: String,
    method: &'a str,
    url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<JsonContent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<SubRequestBody<'a>>,
}

#[derive(Serialize)]
struct JsonContent {
    #[serde(rename = "Content-Type")]
    content_type: &'static str,
}

impl SubRequest {
    /// Serializes a sub-request whose id is `id` (its index in the batch: the same on every
    /// attempt, so answers match requests however often some are sent again).
    pub fn new(
        id: usize,
        method: &reqwest::Method,
        url: &str,
        body: Option<SubRequestBody<'_>>,
    ) -> Result<Self, serde_json::Error> {
        let text = serde_json::to_string(&Outgoing {
            id: id.to_string(),
            method: method.as_str(),
            url,
            headers: body.as_ref().map(|_| JsonContent {
                content_type: "application/json",
            }),
            body,
        })?;
        Ok(Self {
            text,
            cost: estimate_cost(method, url, None),
        })
    }

    pub fn cost(&self) -> u32 {
        self.cost
    }
}

/// The body of a `$batch` of these sub-requests: `{"requests":[…]}`.
pub fn batch_body<'r>(requests: impl IntoIterator<Item = &'r SubRequest>) -> Vec<u8> {
    let mut body = Vec::with_capacity(4096);
    body.extend_from_slice(b"{\"requests\":[");
    for (index, request) in requests.into_iter().enumerate() {
        if index > 0 {
            body.push(b',');
        }
        body.extend_from_slice(request.text.as_bytes());
    }
    body.extend_from_slice(b"]}");
    body
}

/// A `$batch` answer, borrowed from its text.
#[derive(Debug, Deserialize)]
pub struct BatchAnswer<'a> {
    #[serde(borrow, default)]
    pub responses: Vec<SubAnswer<'a>>,
}

impl<'a> BatchAnswer<'a> {
    /// Reads an answer; text that is not a `$batch` answer reads as one without entries (every
    /// sub-request then counts as unanswered and is sent again).
    pub fn read(text: &'a str) -> Self {
        serde_json::from_str(text).unwrap_or(Self {
            responses: Vec::new(),
        })
    }
}

/// One entry of a `$batch` answer. Read in one pass over the answer's text: the body is read
/// as it is met, keeping only what a writer uses, and the rest of it (the whole item Graph
/// echoes for every create) is skipped once. An entry whose parts have an unexpected shape
/// reads as one without them (see [`Lenient`]), so it never spoils the rest of the answer.
#[derive(Debug, Deserialize)]
pub struct SubAnswer<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    status: Option<&'a RawValue>,
    #[serde(borrow, default)]
    headers: Lenient<SubHeaders<'a>>,
    #[serde(default)]
    body: Lenient<SubBody>,
}

impl SubAnswer<'_> {
    /// The index of the sub-request this answers, if its id is one of ours.
    pub fn index(&self) -> Option<usize> {
        // Our ids are digits, which JSON never escapes.
        let id: &str = serde_json::from_str(self.id?.get()).ok()?;
        id.parse().ok()
    }

    /// The sub-answer's status; an entry without a readable one counts as a server error.
    pub fn status(&self) -> u16 {
        self.status
            .and_then(|s| serde_json::from_str::<u64>(s.get()).ok())
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(500)
    }

    /// The sub-answer's headers (names compared without case).
    pub fn headers(&self) -> &SubHeaders<'_> {
        &self.headers.0
    }

    /// What a writer uses of the body.
    pub fn into_body(self) -> SubBody {
        self.body.0
    }
}

/// A sub-answer's headers with string values, borrowed from the answer where they need no
/// unescaping.
#[derive(Debug, Default)]
pub struct SubHeaders<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl SubHeaders<'_> {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_ref())
    }
}

impl<'de: 'a, 'a> FromObject<'de> for SubHeaders<'a> {
    fn from_object<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut headers = Vec::new();
        while let Some(LenientStr(name)) = map.next_key()? {
            let LenientStr(value) = map.next_value()?;
            if let (Some(name), Some(value)) = (name, value) {
                headers.push((name, value));
            }
        }
        Ok(Self(headers))
    }
}

/// The parts of a sub-answer's body a writer uses; the rest of it is skipped unread.
#[derive(Debug, Default, Clone)]
pub struct SubBody {
    /// A created item's id.
    pub id: Option<String>,
    pub error: Option<SubError>,
}

impl<'de> FromObject<'de> for SubBody {
    fn from_object<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        let mut body = Self::default();
        read_fields(map, |key, map| {
            match key {
                "id" => body.id = map.next_value::<LenientStr<'_>>()?.owned(),
                "error" => body.error = Some(map.next_value::<Lenient<SubError>>()?.0),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(body)
    }
}

/// Graph's error object.
#[derive(Debug, Default, Clone)]
pub struct SubError {
    pub code: Option<String>,
    pub message: Option<String>,
}

impl<'de> FromObject<'de> for SubError {
    fn from_object<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        let mut error = Self::default();
        read_fields(map, |key, map| {
            match key {
                "code" => error.code = map.next_value::<LenientStr<'_>>()?.owned(),
                "message" => error.message = map.next_value::<LenientStr<'_>>()?.owned(),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(error)
    }
}

impl SubBody {
    /// Graph's error code and message (`unknown` and empty when the body has none).
    pub fn error(&self) -> (String, String) {
        let error = self.error.as_ref();
        (
            error
                .and_then(|e| e.code.clone())
                .unwrap_or_else(|| "unknown".into()),
            error.and_then(|e| e.message.clone()).unwrap_or_default(),
        )
    }

    /// A created item's id as a number.
    pub fn item_id(&self) -> Option<i64> {
        self.id.as_deref()?.parse().ok()
    }
}

/// Reads a JSON object's entries: `field` reads the value of each key it knows and answers
/// `true`; the values of other keys (and of keys that are not strings) are skipped unread.
fn read_fields<'de, A: MapAccess<'de>>(
    mut map: A,
    mut field: impl FnMut(&str, &mut A) -> Result<bool, A::Error>,
) -> Result<(), A::Error> {
    while let Some(LenientStr(key)) = map.next_key()? {
        let read = match key.as_deref() {
            Some(key) => field(key, &mut map)?,
            None => false,
        };
        if !read {
            map.next_value::<IgnoredAny>()?;
        }
    }
    Ok(())
}

/// The `Visitor` methods of a lenient value for JSON values other than objects and strings:
/// each is consumed and reads as `$default`.
macro_rules! skip_other_values {
    ($default:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($default)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($default)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($default)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($default)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($default)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($default)
        }
    };
}

/// What a [`Lenient`] value makes of a JSON object.
trait FromObject<'de>: Default {
    fn from_object<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

/// A `T` read from a JSON object; any other JSON value reads as `T::default()` (skipped, not
/// an error).
#[derive(Debug, Default)]
struct Lenient<T>(T);

impl<'de, T: FromObject<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: FromObject<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = Lenient<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::from_object(map).map(Lenient)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Lenient(T::default()))
            }
            skip_other_values!(Lenient(T::default()));
        }
        deserializer.deserialize_any(ObjectVisitor(PhantomData))
    }
}

/// A JSON string, borrowed from the answer when it needs no unescaping; any other JSON value
/// reads as `None` (skipped, not an error).
struct LenientStr<'a>(Option<Cow<'a, str>>);

impl LenientStr<'_> {
    fn owned(self) -> Option<String> {
        self.0.map(Cow::into_owned)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for LenientStr<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = LenientStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(LenientStr(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(LenientStr(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(LenientStr(Some(Cow::Owned(v))))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LenientStr(None))
            }
            skip_other_values!(LenientStr(None));
        }
        deserializer.deserialize_any(StrVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, serde_json::Value)]) -> serde_json::Map<String, serde_json::Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn sub_requests_serialize_as_graph_expects() {
        let map = fields(&[
            ("Title", "a \"quoted\" title".into()),
            ("Amount", 2.5.into()),
        ]);
        let create = SubRequest::new(
            0,
            &reqwest::Method::POST,
            "/sites/s/lists/l/items",
            Some(SubRequestBody::Fields { fields: &map }),
        )
        .expect("create");
        let update = SubRequest::new(
            1,
            &reqwest::Method::PATCH,
            "/sites/s/lists/l/items/7/fields",
            Some(SubRequestBody::Map(&map)),
        )
        .expect("update");
        let delete = SubRequest::new(
            2,
            &reqwest::Method::DELETE,
            "/sites/s/lists/l/items/8",
            None,
        )
        .expect("delete");
        let body: serde_json::Value =
            serde_json::from_slice(&batch_body([&create, &update, &delete])).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"requests": [
                {"id": "0", "method": "POST", "url": "/sites/s/lists/l/items",
                 "headers": {"Content-Type": "application/json"},
                 "body": {"fields": {"Title": "a \"quoted\" title", "Amount": 2.5}}},
                {"id": "1", "method": "PATCH", "url": "/sites/s/lists/l/items/7/fields",
                 "headers": {"Content-Type": "application/json"},
                 "body": {"Title": "a \"quoted\" title", "Amount": 2.5}},
                {"id": "2", "method": "DELETE", "url": "/sites/s/lists/l/items/8"}
            ]})
        );
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&batch_body([&update])).expect("json")["requests"]
                [0]["id"],
            "1",
            "a retried sub-request keeps its id"
        );
        assert!(create.cost() > 0 && delete.cost() > 0);
    }

    #[test]
    fn answers_read_ids_statuses_headers_and_errors() {
        let text = r#"{"responses":[
            {"id":"1","status":201,"headers":{"Content-Type":"application/json"},
             "body":{"id":"42","fields":{"Title":"x","Nested":{"a":[1,2,{"b":null}]}},"createdBy":{"user":{"id":"u"}}}},
            {"id":"0","status":429,"headers":{"retry-after":"3","RateLimit-Remaining":"10"}},
            {"id":"2","status":409,"body":{"error":{"code":"nameAlreadyExists","message":"the key \"k\" is taken"}}},
            {"id":"x","status":200},
            {"id":"3","status":"weird","body":"not an object"},
            {"id":"4","status":201,"headers":"odd","body":[1,{"id":"9"}]},
            {"id":"5","status":400,"headers":{"Retry-After":7,"X-Note":"a\"b"},"body":{"error":"flat","id":12}},
            {"id":"6","status":201,"body":{"fields":{"id":"not this","List":[{"id":"nor this"}]},"id":"77"}},
            {"id":"7","status":204,"headers":null,"body":null}
        ]}"#;
        let answer = BatchAnswer::read(text);
        let entries = &answer.responses;
        assert_eq!(entries.len(), 9);
        assert_eq!(entries[0].index(), Some(1));
        assert_eq!(entries[0].status(), 201);
        assert_eq!(entries[0].body.0.item_id(), Some(42));
        assert_eq!(entries[1].headers().get("Retry-After"), Some("3"));
        assert_eq!(entries[1].headers().get("ratelimit-remaining"), Some("10"));
        assert_eq!(entries[1].body.0.item_id(), None);
        assert_eq!(
            entries[2].body.0.error(),
            ("nameAlreadyExists".into(), "the key \"k\" is taken".into())
        );
        assert_eq!(entries[3].index(), None);
        assert_eq!(entries[4].status(), 500);
        assert_eq!(entries[4].body.0.error(), ("unknown".into(), String::new()));
        // Parts of unexpected shapes read as absent, without spoiling the other entries.
        assert_eq!(entries[5].headers().get("Content-Type"), None);
        assert_eq!(entries[5].body.0.item_id(), None);
        assert_eq!(
            entries[6].headers().get("retry-after"),
            None,
            "not a string"
        );
        assert_eq!(entries[6].headers().get("x-note"), Some("a\"b"));
        assert_eq!(entries[6].body.0.item_id(), None);
        assert_eq!(entries[6].body.0.error(), ("unknown".into(), String::new()));
        assert_eq!(
            entries[7].body.0.item_id(),
            Some(77),
            "ids inside the item are not its id"
        );
        assert_eq!(entries[8].index(), Some(7));
        assert_eq!(entries[8].body.0.item_id(), None);
        assert!(BatchAnswer::read("<html>oops</html>").responses.is_empty());
    }
}
