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
    format!("\"{}\"", moq_tokio::proto::ALPN)
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
        Some(Ok(list)) if list.iter().any(|p| p == moq_tokio::proto::ALPN) => Negotiation::Selected,
        Some(Ok(list)) => Negotiation::Refused(list),
    }
}

/// Why a Structured-Field list did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid structured-field list at byte {0}")]
pub struct ParseError(pub usize);

/// Parses an RFC 8941 sf-list and returns the text of its top-level string and token items,
/// in order (a token counts too, so an unquoted `moq-lite-04` is understood). Other items
/// (numbers, booleans, byte sequences, inner lists) and all parameters are skipped.
pub fn parse_list(input: &str) -> Result<Vec<String>, ParseError> {
    let mut p = Parser {
        s: input.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    p.skip_sp();
    if p.done() {
        return Ok(out);
    }
    loop {
        if p.peek() == Some(b'(') {
            p.i += 1;
            loop {
                p.skip_sp();
                if p.peek() == Some(b')') {
                    p.i += 1;
                    break;
                }
                p.bare_item()?;
                p.params()?;
                match p.peek() {
                    Some(b' ') | Some(b')') => {}
                    _ => return Err(ParseError(p.i)),
                }
            }
        } else if let Some(text) = p.bare_item()? {
            out.push(text);
        }
        p.params()?;
        p.skip_ows();
        if p.done() {
            return Ok(out);
        }
        if p.peek() != Some(b',') {
            return Err(ParseError(p.i));
        }
        p.i += 1;
        p.skip_ows();
        if p.done() {
            // A trailing comma is invalid.
            return Err(ParseError(p.i));
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ') | Some(b'\t')) {
            self.i += 1;
        }
    }

    /// A bare item; `Some(text)` for a string or a token.
    fn bare_item(&mut self) -> Result<Option<String>, ParseError> {
        match self.peek() {
            Some(b'"') => self.string().map(Some),
            Some(c) if c.is_ascii_alphabetic() || c == b'*' => Ok(Some(self.token())),
            Some(c) if c.is_ascii_digit() || c == b'-' => {
                self.number()?;
                Ok(None)
            }
            Some(b':') => {
                self.i += 1;
                while let Some(c) = self.peek() {
                    self.i += 1;
                    if c == b':' {
                        return Ok(None);
                    }
                    if !(c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'=') {
                        return Err(ParseError(self.i - 1));
                    }
                }
                Err(ParseError(self.i))
            }
            Some(b'?') => {
                self.i += 1;
                match self.peek() {
                    Some(b'0') | Some(b'1') => {
                        self.i += 1;
                        Ok(None)
                    }
                    _ => Err(ParseError(self.i)),
                }
            }
            _ => Err(ParseError(self.i)),
        }
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.i += 1;
        let mut text = String::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => return Ok(text),
                b'\\' => match self.peek() {
                    Some(e @ (b'"' | b'\\')) => {
                        self.i += 1;
                        text.push(char::from(e));
                    }
                    _ => return Err(ParseError(self.i)),
                },
                0x20..=0x7e => text.push(char::from(c)),
                _ => return Err(ParseError(self.i - 1)),
            }
        }
        Err(ParseError(self.i))
    }

    fn token(&mut self) -> String {
        let start = self.i;
        while let Some(c) = self.peek() {
            let tchar = c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&c);
            if !tchar {
                break;
            }
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    fn number(&mut self) -> Result<(), ParseError> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let start = self.i;
        while matches!(self.peek(), Some(c) if c.is_ascii_digit() || c == b'.') {
            self.i += 1;
        }
        if self.i == start {
            return Err(ParseError(self.i));
        }
        Ok(())
    }

    /// `;key[=value]` parameters, skipped.
    fn params(&mut self) -> Result<(), ParseError> {
        while self.peek() == Some(b';') {
            self.i += 1;
            self.skip_sp();
            match self.peek() {
                Some(c) if c.is_ascii_lowercase() || c == b'*' => {}
                _ => return Err(ParseError(self.i)),
            }
            while matches!(self.peek(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(&c))
            {
                self.i += 1;
            }
            if self.peek() == Some(b'=') {
                self.i += 1;
                self.bare_item()?;
            }
        }
        Ok(())
    }
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
