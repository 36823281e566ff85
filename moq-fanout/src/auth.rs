//! Access control as a hook: from what is known about a connection to the broadcast
//! prefixes it may publish and subscribe under.
//!
//! Native QUIC carries no URL, so there a policy sees only the peer's address and the TLS
//! server name; over WebTransport it also sees the URL path and its `?token=` (or `?jwt=`).
//! Refusals use the spec's codes: a SUBSCRIBE or FETCH outside the allowed prefixes is
//! refused with Subscribe code 0x4 (Unauthorized) / Fetch code 0x0, and a publisher's
//! announcement outside its prefixes makes the relay cancel the announce stream with
//! Announce code 0x4 (Banned prefix).

use std::net::SocketAddr;
use std::time::SystemTime;

use moq_quinn::{BroadcastPath, publish::PathPrefix};

use crate::config::AuthConfig;
use crate::jwt::Pattern;

/// What is known about a connection when it is accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionRequest {
    /// `"quic"` or `"webtransport"`.
    pub transport: &'static str,
    /// The URL path without the query (WebTransport only).
    pub path: Option<String>,
    /// The `token` (or `jwt`) query parameter (WebTransport only).
    pub token: Option<String>,
    /// The peer's address.
    pub remote: Option<SocketAddr>,
    /// The TLS server name the client asked for.
    pub server_name: Option<String>,
}

impl ConnectionRequest {
    /// A request for a transport, with nothing else known yet.
    pub fn new(transport: &'static str) -> Self {
        Self {
            transport,
            ..Self::default()
        }
    }

    /// Splits a URL path (`/relay?token=abc`) into `path` and `token`.
    pub fn with_url_path(mut self, url_path: &str) -> Self {
        let (path, query) = url_path.split_once('?').unwrap_or((url_path, ""));
        self.path = Some(path.to_owned());
        self.token = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token" || *k == "jwt")
            .map(|(_, v)| v.to_owned());
        self
    }
}

/// Broadcast prefixes (or patterns) a connection may publish and subscribe under, and
/// whether it may stay at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    publish: Vec<PathPrefix>,
    subscribe: Vec<PathPrefix>,
    publish_patterns: Vec<Pattern>,
    subscribe_patterns: Vec<Pattern>,
    /// Set: the connection is closed at once with Session code 0x2 (unauthorized).
    refusal: Option<String>,
    /// When the connection's right ends (closed then with Session code 0x2).
    expires: Option<SystemTime>,
}

fn prefix_list<S: AsRef<str>>(list: &[S]) -> Vec<PathPrefix> {
    list.iter().map(|p| PathPrefix::new(p.as_ref())).collect()
}

impl Access {
    /// Everything, both ways.
    pub fn all() -> Self {
        Self {
            publish: vec![PathPrefix::root()],
            subscribe: vec![PathPrefix::root()],
            ..Self::default()
        }
    }

    /// Nothing at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// These prefixes (any path form: `a/`, `/a/`, `a`; `""` or `/` is everything).
    pub fn new<S: AsRef<str>>(publish: &[S], subscribe: &[S]) -> Self {
        Self {
            publish: prefix_list(publish),
            subscribe: prefix_list(subscribe),
            ..Self::default()
        }
    }

    /// These patterns (see [`Pattern`]: `*` one segment, `**` any number).
    pub fn from_patterns(publish: Vec<Pattern>, subscribe: Vec<Pattern>) -> Self {
        Self {
            publish_patterns: publish,
            subscribe_patterns: subscribe,
            ..Self::default()
        }
    }

    /// No access, and the connection is closed at once with Session code 0x2
    /// (unauthorized) and `reason` (a token that is wrongly signed, expired...).
    pub fn refused(reason: impl Into<String>) -> Self {
        Self {
            refusal: Some(reason.into()),
            ..Self::default()
        }
    }

    /// The same access until `at`, when the connection is closed with Session code 0x2.
    pub fn with_expiry(mut self, at: SystemTime) -> Self {
        self.expires = Some(at);
        self
    }

    /// Why the connection is refused, if it is.
    pub fn refusal(&self) -> Option<&str> {
        self.refusal.as_deref()
    }

    /// When the connection's right ends, if it does.
    pub fn expires(&self) -> Option<SystemTime> {
        self.expires
    }

    /// Whether the connection may publish `path`.
    pub fn may_publish(&self, path: &BroadcastPath) -> bool {
        self.publish.iter().any(|p| p.matches(path))
            || self
                .publish_patterns
                .iter()
                .any(|p| p.matches(path.as_str()))
    }

    /// Whether the connection may subscribe to (or fetch from) `path`.
    pub fn may_subscribe(&self, path: &BroadcastPath) -> bool {
        self.subscribe.iter().any(|p| p.matches(path))
            || self
                .subscribe_patterns
                .iter()
                .any(|p| p.matches(path.as_str()))
    }

    /// The prefixes it may publish under (a pattern's literal part before its first
    /// wildcard stands for it).
    pub fn publish_prefixes(&self) -> Vec<PathPrefix> {
        Self::prefixes_of(&self.publish, &self.publish_patterns)
    }

    /// The prefixes it may subscribe under (as [`Access::publish_prefixes`]).
    pub fn subscribe_prefixes(&self) -> Vec<PathPrefix> {
        Self::prefixes_of(&self.subscribe, &self.subscribe_patterns)
    }

    fn prefixes_of(prefixes: &[PathPrefix], patterns: &[Pattern]) -> Vec<PathPrefix> {
        let mut out = prefixes.to_vec();
        out.extend(
            patterns
                .iter()
                .map(|p| PathPrefix::new(&p.literal_prefix())),
        );
        out
    }
}

/// The hook: decides what a connection may do. Called once per connection, on the accept
/// path, so it must not block.
pub trait AccessControl: Send + Sync + 'static {
    /// What the connection may publish and subscribe. [`Access::none`] still lets it
    /// connect (its requests are then refused one by one with the spec's codes).
    fn check(&self, request: &ConnectionRequest) -> Access;
}

impl<F> AccessControl for F
where
    F: Fn(&ConnectionRequest) -> Access + Send + Sync + 'static,
{
    fn check(&self, request: &ConnectionRequest) -> Access {
        self(request)
    }
}

/// Anyone may publish and subscribe anything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Anonymous;

impl AccessControl for Anonymous {
    fn check(&self, _: &ConnectionRequest) -> Access {
        Access::all()
    }
}

/// The built-in policy: static tokens, each with its prefixes, and what anonymous
/// connections may do.
///
/// Tokens are kept as their SHA-256 digests only, and a presented token is checked against
/// every one of them in constant time (`subtle`), so neither the time a check takes nor a
/// debug print of the policy tells anything of a token.
#[derive(Clone, Debug)]
pub struct StaticTokens {
    tokens: Vec<([u8; 32], Access)>,
    anonymous: Access,
}

/// A secret's SHA-256, which is what is kept and compared (in constant time).
pub(crate) fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

impl StaticTokens {
    /// A policy from the `[auth]` section: with no tokens and no `anonymous_*` lists,
    /// anonymous access to everything; otherwise anonymous connections get the
    /// `anonymous_*` prefixes (default none).
    pub fn from_config(config: &AuthConfig) -> Self {
        let open = config.tokens.is_empty()
            && config.anonymous_publish.is_none()
            && config.anonymous_subscribe.is_none();
        let anonymous = if open {
            Access::all()
        } else {
            Access::new(
                config.anonymous_publish.as_deref().unwrap_or_default(),
                config.anonymous_subscribe.as_deref().unwrap_or_default(),
            )
        };
        let tokens = config
            .tokens
            .iter()
            .map(|t| (digest(&t.token), Access::new(&t.publish, &t.subscribe)))
            .collect();
        Self { tokens, anonymous }
    }
}

impl AccessControl for StaticTokens {
    fn check(&self, request: &ConnectionRequest) -> Access {
        use subtle::ConstantTimeEq;
        let Some(token) = &request.token else {
            return self.anonymous.clone();
        };
        let presented = digest(token);
        // Every configured token is compared, matched or not.
        let mut found = None;
        for (known, access) in &self.tokens {
            let equal = bool::from(known.ct_eq(&presented));
            if equal && found.is_none() {
                found = Some(access);
            }
        }
        found.unwrap_or(&self.anonymous).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenConfig;

    fn path(p: &str) -> BroadcastPath {
        BroadcastPath::new(p)
    }

    #[test]
    fn url_paths_give_path_and_token() {
        let r = ConnectionRequest::new("webtransport").with_url_path("/relay?x=1&token=abc");
        assert_eq!(r.path.as_deref(), Some("/relay"));
        assert_eq!(r.token.as_deref(), Some("abc"));
        let r = ConnectionRequest::new("webtransport").with_url_path("/?jwt=j");
        assert_eq!(r.token.as_deref(), Some("j"));
        let r = ConnectionRequest::new("webtransport").with_url_path("/moq");
        assert_eq!(r.token, None);
    }

    #[test]
    fn prefixes_match_in_any_path_form() {
        let access = Access::new(&["a/"], &["/a/", "b"]);
        assert!(access.may_publish(&path("/a/x")));
        assert!(!access.may_publish(&path("/ab")));
        assert!(!access.may_publish(&path("/b/x")));
        assert!(access.may_subscribe(&path("a/x")));
        assert!(access.may_subscribe(&path("/b/x")));
        assert!(!access.may_subscribe(&path("/c")));
        assert!(Access::all().may_publish(&path("/anything/at/all")));
        assert!(!Access::none().may_subscribe(&path("/a")));
    }

    #[test]
    fn static_tokens() {
        let open = StaticTokens::from_config(&AuthConfig::default());
        assert_eq!(open.check(&ConnectionRequest::new("quic")), Access::all());

        let config = AuthConfig {
            tokens: vec![TokenConfig {
                token: "t".into(),
                publish: vec!["a/".into()],
                subscribe: vec!["a/".into()],
            }],
            ..AuthConfig::default()
        };
        let policy = StaticTokens::from_config(&config);
        let anonymous = policy.check(&ConnectionRequest::new("quic"));
        assert_eq!(anonymous, Access::none());
        let wrong =
            policy.check(&ConnectionRequest::new("webtransport").with_url_path("/?token=x"));
        assert_eq!(wrong, Access::none());
        let a = policy.check(&ConnectionRequest::new("webtransport").with_url_path("/?token=t"));
        assert!(a.may_subscribe(&path("/a/x")));
        assert!(!a.may_subscribe(&path("/b/x")));
    }

    #[test]
    fn a_policy_keeps_no_token_in_the_clear() {
        let config: AuthConfig = toml::from_str(
            r#"
            [[tokens]]
            token = "s3cret-token"
            subscribe = ["/live"]
            "#,
        )
        .unwrap();
        let policy = StaticTokens::from_config(&config);
        assert!(!format!("{policy:?}").contains("s3cret"));
        let with = |token: &str| {
            let mut request = ConnectionRequest::new("webtransport");
            request.token = Some(token.to_owned());
            policy.check(&request)
        };
        assert!(with("s3cret-token").may_subscribe(&path("/live/a")));
        assert!(!with("s3cret-tokem").may_subscribe(&path("/live/a")));
        assert!(!with("").may_subscribe(&path("/live/a")));
    }
}
