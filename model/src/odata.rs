//! Request URLs as ODA accepts them: UTF-8 percent-encoded entity names,
//! a literal `$` in option names, `$format=json` always. Pure, so the
//! client and oda-sim (which writes nextLinks as ODA does) share it.

/// Percent-encodes a URL component, keeping what OData literals need raw
/// and ODA accepts (`'`, `(`, `)`, `,`, `:`).
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b'\''
            | b'('
            | b')'
            | b','
            | b':' => out.push(byte as char),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// Percent-encodes everything but RFC 3986's unreserved characters, as
/// .NET's `Uri.EscapeDataString` (and so ODA's own nextLinks) does.
pub fn escape_data_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// `Aktør` → `Akt%C3%B8r`.
pub fn entity_path(entity: &str) -> String {
    encode_component(entity)
}

/// The query options of one collection request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub filter: Option<String>,
    pub orderby: Option<String>,
    pub select: Option<String>,
    pub top: Option<u32>,
    pub inlinecount: bool,
}

impl Query {
    pub fn filter(mut self, filter: impl Into<String>) -> Self {
        self.filter = Some(filter.into());
        self
    }

    pub fn orderby(mut self, orderby: impl Into<String>) -> Self {
        self.orderby = Some(orderby.into());
        self
    }

    pub fn select(mut self, select: impl Into<String>) -> Self {
        self.select = Some(select.into());
        self
    }

    pub fn top(mut self, top: u32) -> Self {
        self.top = Some(top);
        self
    }

    pub fn inlinecount(mut self) -> Self {
        self.inlinecount = true;
        self
    }

    /// `$format=json&…` with values encoded.
    pub fn to_query_string(&self) -> String {
        let mut parts = vec!["$format=json".to_owned()];
        if let Some(filter) = &self.filter {
            parts.push(format!("$filter={}", encode_component(filter)));
        }
        if let Some(orderby) = &self.orderby {
            parts.push(format!("$orderby={}", encode_component(orderby)));
        }
        if let Some(select) = &self.select {
            parts.push(format!("$select={}", encode_component(select)));
        }
        if let Some(top) = self.top {
            parts.push(format!("$top={top}"));
        }
        if self.inlinecount {
            parts.push("$inlinecount=allpages".to_owned());
        }
        parts.join("&")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn danish_names_and_filters_are_encoded_as_oda_takes_them() {
        assert_eq!(entity_path("Aktør"), "Akt%C3%B8r");
        let q = Query::default()
            .filter("opdateringsdato gt datetime'2014-01-03T13:10:20.757' and id gt 5")
            .orderby("opdateringsdato,id")
            .top(100)
            .inlinecount();
        assert_eq!(
            q.to_query_string(),
            "$format=json&$filter=opdateringsdato%20gt%20datetime'2014-01-03T13:10:20.757'%20and%20id%20gt%205\
             &$orderby=opdateringsdato,id&$top=100&$inlinecount=allpages"
        );
        assert_eq!(
            encode_component("akt\u{f8}rid eq 5"),
            "akt%C3%B8rid%20eq%205"
        );
        assert_eq!(encode_component("a&b#c+d"), "a%26b%23c%2Bd");
    }
}
