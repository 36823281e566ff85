//! WebTransport sub-protocol negotiation (spec §1): the client offers
//! `WT-Available-Protocols: "moq-lite-04"` (a Structured-Field list of strings), the server
//! answers `WT-Protocol: "moq-lite-04"` (an sf-string, quotes included).

use std::collections::HashMap;

/// The request header carrying the offered protocols.
pub const AVAILABLE_PROTOCOLS: &str = "wt-available-protocols";
/// The response header carrying the selected protocol.
pub const PROTOCOL: &str = "wt-protocol";

/// `moq-lite-04` as an sf-string, the value of both headers.
pub fn quoted_version() -> String {
    format!("\"{}\"", moq_tokio::transport::proto::ALPN)
}

/// What the server decides about a CONNECT request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Negotiation {
    /// The client offered `moq-lite-04`: accept and answer `wt-protocol: "moq-lite-04"`.
    Selected,
    /// The request carries no (parsable) `wt-available-protocols`: accept, assuming
    /// moq-lite-04, and answer no protocol.
    Assumed,
    /// The client offered only these other protocols: refuse the session.
    Refused(Vec<String>),
}

impl Negotiation {
    /// The response headers for an accepted session.
    pub fn response_headers(&self) -> Vec<(String, String)> {
        match self {
            Negotiation::Selected => vec![(PROTOCOL.to_owned(), quoted_version())],
            _ => Vec::new(),
        }
    }
}

/// Decides from the CONNECT request's headers (names compared case-insensitively).
pub fn negotiate(headers: &HashMap<String, String>) -> Negotiation {
    let offered = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(AVAILABLE_PROTOCOLS))
        .map(|(_, value)| parse_list(value))
        .next();
    match offered {
        // A field that fails to parse is ignored (RFC 8941 §4.2); an empty list is the same
        // as no field (§3.1).
        None | Some(Err(_)) => Negotiation::Assumed,
        Some(Ok(list)) if list.is_empty() => Negotiation::Assumed,
        Some(Ok(list)) if list.iter().any(|p| p == moq_tokio::transport::proto::ALPN) => {
            Negotiation::Selected
        }
        Some(Ok(list)) => Negotiation::Refused(list),
    }
}

/// Why a Structured-Field list did not parse (RFC 9651, through the `sfv` crate).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid structured-field list: {0}")]
pub struct ParseError(pub String);

/// Parses an RFC 9651 sf-list and returns the text of its top-level string and token items,
/// in order (a token counts too, so an unquoted `moq-lite-04` is understood). Other items
/// (numbers, booleans, byte sequences, inner lists) and all parameters are skipped.
pub fn parse_list(input: &str) -> Result<Vec<String>, ParseError> {
    let list: sfv::List = sfv::Parser::new(input)
        .parse()
        .map_err(|e| ParseError(e.to_string()))?;
    Ok(list
        .iter()
        .filter_map(|entry| match entry {
            sfv::ListEntry::Item(item) => match &item.bare_item {
                sfv::BareItem::String(s) => Some(s.as_str().to_owned()),
                sfv::BareItem::Token(t) => Some(t.as_str().to_owned()),
                _ => None,
            },
            sfv::ListEntry::InnerList(_) => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn lists() {
        assert_eq!(
            parse_list(r#""moq-lite-04", "moq-lite-03""#).unwrap(),
            vec!["moq-lite-04", "moq-lite-03"]
        );
        assert_eq!(parse_list(r#""moq-lite-04""#).unwrap(), vec!["moq-lite-04"]);
        assert_eq!(parse_list("").unwrap(), Vec::<String>::new());
        assert_eq!(
            parse_list("\"a\";q=1;x,\t tok , 12, ?1, :aGk=:, (\"x\" \"y\");p, \"b\\\"c\"").unwrap(),
            vec!["a", "tok", "b\"c"]
        );
        assert_eq!(parse_list("moq-lite-04").unwrap(), vec!["moq-lite-04"]);
        for bad in [
            r#""open"#,
            r#""a","#,
            r#""a" "b""#,
            r#""a",,"b""#,
            "\"\\x\"",
        ] {
            assert!(parse_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn negotiation() {
        let h = headers(&[("wt-available-protocols", r#""moq-lite-04", "moq-lite-03""#)]);
        assert_eq!(negotiate(&h), Negotiation::Selected);
        assert_eq!(
            Negotiation::Selected.response_headers(),
            vec![("wt-protocol".to_owned(), "\"moq-lite-04\"".to_owned())]
        );
        let h = headers(&[("WT-Available-Protocols", r#""moq-lite-03", "moq-lite-04""#)]);
        assert_eq!(negotiate(&h), Negotiation::Selected);
        assert_eq!(negotiate(&headers(&[])), Negotiation::Assumed);
        assert_eq!(
            negotiate(&headers(&[("wt-available-protocols", "\"broken")])),
            Negotiation::Assumed
        );
        assert!(Negotiation::Assumed.response_headers().is_empty());
        assert_eq!(
            negotiate(&headers(&[(
                "wt-available-protocols",
                r#""moq-lite-03", "moqt-15""#
            )])),
            Negotiation::Refused(vec!["moq-lite-03".into(), "moqt-15".into()])
        );
        assert_eq!(
            negotiate(&headers(&[("wt-available-protocols", "")])),
            Negotiation::Assumed
        );
        // A list with no string or token offers nothing: treated as no list.
        assert_eq!(
            negotiate(&headers(&[("wt-available-protocols", "4")])),
            Negotiation::Assumed
        );
    }
}
