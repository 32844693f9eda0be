//! The OData 3.0 JSON envelope of a collection response.

use serde::Deserialize;
use serde_json::{Map, Value};

/// One page of records.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    pub records: Vec<Map<String, Value>>,
    /// `odata.count` (sent as a string) when `$inlinecount=allpages` was asked.
    pub count: Option<u64>,
    /// Present when the server cut the result.
    pub next_link: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    value: Vec<Map<String, Value>>,
    #[serde(rename = "odata.count")]
    count: Option<Value>,
    #[serde(rename = "odata.nextLink")]
    next_link: Option<String>,
}

impl Page {
    /// Reads a body; anything but a well-formed envelope is an error, so a
    /// truncated or foreign body never reads as "no changes".
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        // serde reads a struct from a JSON array of its fields too: only an
        // object is an envelope (`[[],null,null]` is not an empty page).
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err("not an OData collection: the body is not a JSON object".into());
        }
        let envelope: Envelope =
            serde_json::from_slice(body).map_err(|e| format!("not an OData collection: {e}"))?;
        let count = match envelope.count {
            None => None,
            Some(Value::String(s)) => Some(
                s.parse()
                    .map_err(|_| format!("odata.count `{s}` is not a number"))?,
            ),
            Some(Value::Number(n)) => Some(
                n.as_u64()
                    .ok_or_else(|| format!("odata.count {n} is not a whole number"))?,
            ),
            Some(other) => return Err(format!("odata.count is {other}")),
        };
        Ok(Self {
            records: envelope.value,
            count,
            next_link: envelope.next_link,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_envelope_with_a_string_count() {
        let body =
            br#"{"odata.metadata":"https://oda.ft.dk/api/$metadata#Sag","odata.count":"96538",
            "value":[{"id":1}],"odata.nextLink":"https://oda.ft.dk/api/Sag?$skip=100"}"#;
        let page = Page::parse(body).expect("valid");
        assert_eq!(page.count, Some(96538));
        assert_eq!(page.records.len(), 1);
        assert!(page.next_link.is_some());
    }

    #[test]
    fn truncated_or_foreign_bodies_are_errors() {
        assert!(Page::parse(br#"{"odata.metadata":"x","value":[{"id":1},{"i"#).is_err());
        assert!(Page::parse(b"<html>404</html>").is_err());
        assert!(
            Page::parse(br#"{"odata.metadata":"x"}"#).is_err(),
            "no value array"
        );
        assert!(
            Page::parse(b"[[],null,null]").is_err(),
            "an array is no envelope"
        );
        assert!(Page::parse(br#"{"value":[],"odata.count":-1}"#).is_err());
    }
}
