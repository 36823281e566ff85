//! moq-relay's tokens: JWTs as moq-dev's `moq-token` and `moq-auth` write them, checked with
//! the same keys (JWK files) and the same rules, so one token serves a moq-relay cluster and
//! moq-fanout as its edge.
//!
//! - **Where the token comes from**: the last non-empty `jwt` query parameter of the
//!   WebTransport URL. Native QUIC on moq-lite-04 carries no URL (moq-relay then sees the
//!   path `/` and no query), so a native-QUIC connection is anonymous, as on moq-relay.
//! - **Keys**: JWK files, as JSON or as base64url of the JSON (moq-token's files); `kty` `oct`
//!   (HS256/384/512), `RSA` (RS256/384/512, PS256/384/512), `EC` (ES256, ES384) and `OKP`
//!   (EdDSA, Ed25519). A token naming a `kid` is checked with that key only; one without,
//!   with each key in turn. A key whose `key_ops` leave out `verify` is not used.
//! - **Claims**: `root`; the prefix form `put` / `get` (a string or a list; `p` allows
//!   `p/**`, `""` everything) or the pattern form `publish` / `subscribe` (lists of patterns:
//!   `a/b` is one broadcast, `*` one segment, `**` any number); never both forms; `exp` and
//!   `nbf` enforced with no leeway, `iat`, `iss`, `sub` and `jti` ignored. A token that
//!   grants nothing is refused.
//! - **Root and path**: the URL path and the root must overlap (one within the other),
//!   else the token is refused; patterns are rooted at `root`. Unlike moq-relay, moq-fanout
//!   does not re-root a session's broadcast names at its URL path: paths are absolute.
//! - **Refusals**: a token that is malformed, wrongly signed, expired, not yet valid, or for
//!   another root closes the session with Session code 0x2 (unauthorized), as moq-relay
//!   does; so does the token's expiry during a session. No token: the anonymous prefixes.
//!
//! [`JwtAuth::answer_auth_request`] answers moq-relay's auth-server contract (`--auth-url`)
//! with the same decision, so a moq-relay node can check the tokens through moq-fanout.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, KeyOperations};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::auth::{Access, AccessControl, ConnectionRequest};

/// Most patterns a token may carry in each direction.
pub(crate) const MAX_PATTERNS: usize = 64;

/// Most segments in a root or a pattern.
pub(crate) const MAX_SEGMENTS: usize = 32;

/// The longest token read.
pub(crate) const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Why a key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Neither JSON nor base64url of JSON.
    #[error("{path}: not a JWK (JSON, or base64url of it)")]
    Format {
        /// The file.
        path: PathBuf,
    },
    /// A JWK that cannot verify.
    #[error("{path}: {reason}")]
    Unusable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Not a JWT, or its claims do not parse.
    #[error("the token is malformed: {0}")]
    Malformed(String),
    /// No key verifies its signature.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// Its `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// Its `nbf` is still to come.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// Its root and the URL path do not overlap.
    #[error("the token root `{root}` does not overlap the dialed path `{path}`")]
    RootMismatch {
        /// The token's root.
        root: String,
        /// The URL path.
        path: String,
    },
    /// It allows nothing.
    #[error("the token allows neither publishing nor subscribing")]
    Useless,
    /// No token, and nothing is allowed anonymously.
    #[error("anonymous access is not granted")]
    Anonymous,
}

/// A path pattern, as segments: a literal, `*` (one segment) or `**` (any number).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pattern(Vec<String>);

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Pattern {
    /// A pattern from its text (`live/*/video`, `live/**`; `**` alone is everything).
    pub fn new(text: &str) -> Self {
        Self(segments(text))
    }

    /// The prefix form: `p` allows `p` and everything under it (`""`: everything).
    pub fn prefix(prefix: &str) -> Self {
        let mut s = segments(prefix);
        s.push("**".to_owned());
        Self(s)
    }

    /// Whether `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        fn go(p: &[String], s: &[&str]) -> bool {
            match p.split_first() {
                None => s.is_empty(),
                Some((first, rest)) if first == "**" => {
                    (0..=s.len()).any(|skip| go(rest, &s[skip..]))
                }
                Some((first, rest)) => match s.split_first() {
                    Some((seg, more)) => (first == "*" || first == seg) && go(rest, more),
                    None => false,
                },
            }
        }
        let path: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        go(&self.0, &path)
    }

    /// The literal segments before the first wildcard, as a path prefix.
    pub fn literal_prefix(&self) -> String {
        self.0
            .iter()
            .take_while(|s| *s != "*" && *s != "**")
            .cloned()
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The patterns `q` such that `seg/q` matches this one.
    fn after(&self, seg: &str) -> Vec<Pattern> {
        match self.0.split_first() {
            None => Vec::new(),
            Some((first, rest)) if first == "**" => {
                let mut out = vec![self.clone()];
                out.extend(Pattern(rest.to_vec()).after(seg));
                out
            }
            Some((first, rest)) if first == "*" || first == seg => vec![Pattern(rest.to_vec())],
            Some(_) => Vec::new(),
        }
    }

    /// This pattern under `root`.
    fn rooted(&self, root: &[String]) -> Pattern {
        Pattern(root.iter().chain(&self.0).cloned().collect())
    }

    fn too_long(&self) -> bool {
        self.0.len() > MAX_SEGMENTS
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

/// A string or a list of strings (moq-token's `put` / `get`).
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Option<Vec<String>> {
        match self {
            Self::None => None,
            Self::One(s) => Some(vec![s]),
            Self::Many(v) => Some(v),
        }
    }
}

#[derive(Debug, Deserialize)]
struct RawClaims {
    #[serde(default)]
    root: String,
    #[serde(default)]
    put: OneOrMany,
    #[serde(default)]
    get: OneOrMany,
    #[serde(default)]
    publish: Option<Vec<String>>,
    #[serde(default)]
    subscribe: Option<Vec<String>>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
}

/// What a verified token grants.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Claims {
    /// Its root, as segments.
    pub root: Vec<String>,
    /// What it may publish, relative to the root.
    pub publish: Vec<Pattern>,
    /// What it may subscribe to, relative to the root.
    pub subscribe: Vec<Pattern>,
    /// When it expires.
    pub expires: Option<SystemTime>,
}

impl Claims {
    fn parse(raw: RawClaims, now: SystemTime) -> Result<Self, Refusal> {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if raw.exp.is_some_and(|exp| exp <= secs) {
            return Err(Refusal::Expired);
        }
        if raw.nbf.is_some_and(|nbf| nbf > secs) {
            return Err(Refusal::NotYetValid);
        }
        let (put, get) = (raw.put.into_vec(), raw.get.into_vec());
        let prefix_form = put.is_some() || get.is_some();
        let pattern_form = raw.publish.is_some() || raw.subscribe.is_some();
        if prefix_form && pattern_form {
            return Err(Refusal::Malformed(
                "both put/get and publish/subscribe".into(),
            ));
        }
        let list = |v: Option<Vec<String>>, make: fn(&str) -> Pattern| {
            let v = v.unwrap_or_default();
            if v.len() > MAX_PATTERNS {
                return Err(Refusal::Malformed("too many patterns".into()));
            }
            let patterns: Vec<Pattern> = v.iter().map(|s| make(s)).collect();
            if patterns.iter().any(Pattern::too_long) {
                return Err(Refusal::Malformed("a pattern is too long".into()));
            }
            Ok(patterns)
        };
        let (publish, subscribe) = if prefix_form {
            (list(put, Pattern::prefix)?, list(get, Pattern::prefix)?)
        } else {
            (
                list(raw.publish, Pattern::new)?,
                list(raw.subscribe, Pattern::new)?,
            )
        };
        let root = segments(&raw.root);
        if root.len() > MAX_SEGMENTS {
            return Err(Refusal::Malformed("the root is too long".into()));
        }
        if publish.is_empty() && subscribe.is_empty() {
            return Err(Refusal::Useless);
        }
        Ok(Self {
            root,
            publish,
            subscribe,
            expires: raw.exp.map(|exp| UNIX_EPOCH + Duration::from_secs(exp)),
        })
    }

    /// Checks that the root and `url_path` overlap.
    fn check_path(&self, url_path: &str) -> Result<(), Refusal> {
        let path = segments(url_path);
        let n = path.len().min(self.root.len());
        if path[..n] != self.root[..n] {
            return Err(Refusal::RootMismatch {
                root: self.root.join("/"),
                path: format!("/{}", path.join("/")),
            });
        }
        Ok(())
    }

    /// Patterns relative to `url_path` (what moq-relay's grant carries): narrowed when the
    /// path is below the root, prefixed with the rest of the root when it is above.
    fn relative_to(&self, patterns: &[Pattern], url_path: &str) -> Vec<Pattern> {
        let path = segments(url_path);
        let mut out: Vec<Pattern> = patterns.iter().map(|p| p.rooted(&self.root)).collect();
        for seg in &path {
            out = out.iter().flat_map(|p| p.after(seg)).collect();
            out.dedup();
            out.truncate(MAX_PATTERNS);
        }
        out
    }
}

struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Verifies moq-relay's JWTs (see the module documentation); an [`AccessControl`].
pub struct JwtAuth {
    keys: Vec<Key>,
    anonymous_publish: Vec<Pattern>,
    anonymous_subscribe: Vec<Pattern>,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("keys", &self.keys.len())
            .field("anonymous_publish", &self.anonymous_publish)
            .field("anonymous_subscribe", &self.anonymous_subscribe)
            .finish()
    }
}

fn algorithm(jwk: &Jwk) -> Option<Algorithm> {
    Some(match jwk.common.key_algorithm? {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

impl JwtAuth {
    /// The policy of an `[auth]` section: its `jwt_keys`, and its `anonymous_*` prefixes
    /// for connections without a token (absent: nothing).
    pub fn from_config(config: &crate::AuthConfig) -> Result<Self, KeyError> {
        Self::from_files(
            &config.jwt_keys,
            config.anonymous_publish.as_deref().unwrap_or_default(),
            config.anonymous_subscribe.as_deref().unwrap_or_default(),
        )
    }

    /// A policy with the keys in `paths`, and what connections without a token may do
    /// (prefixes; empty lists: nothing).
    pub fn from_files<P: AsRef<Path>, S: AsRef<str>>(
        paths: &[P],
        anonymous_publish: &[S],
        anonymous_subscribe: &[S],
    ) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for path in paths {
            let path = path.as_ref();
            let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
                path: path.to_owned(),
                source,
            })?;
            keys.push(Self::parse_key(&text).map_err(|e| match e {
                None => KeyError::Format {
                    path: path.to_owned(),
                },
                Some(reason) => KeyError::Unusable {
                    path: path.to_owned(),
                    reason,
                },
            })?);
        }
        let prefixes = |list: &[S]| list.iter().map(|p| Pattern::prefix(p.as_ref())).collect();
        Ok(Self {
            keys,
            anonymous_publish: prefixes(anonymous_publish),
            anonymous_subscribe: prefixes(anonymous_subscribe),
        })
    }

    /// One key from a JWK's text (JSON, or base64url of it). `Err(None)`: not a JWK at all.
    fn parse_key(text: &str) -> Result<Key, Option<String>> {
        let text = text.trim();
        let json = if text.starts_with('{') {
            text.as_bytes().to_vec()
        } else {
            let engine = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
            engine
                .decode(text.trim_end_matches('='))
                .map_err(|_| None)?
        };
        let jwk: Jwk = serde_json::from_slice(&json).map_err(|e| Some(e.to_string()))?;
        if let Some(ops) = &jwk.common.key_operations
            && !ops.contains(&KeyOperations::Verify)
        {
            return Err(Some("its key_ops leave out verify".into()));
        }
        let algorithm = algorithm(&jwk).ok_or_else(|| Some("no supported alg".to_owned()))?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| Some(e.to_string()))?;
        Ok(Key {
            kid: jwk.common.key_id.clone(),
            algorithm,
            key,
        })
    }

    /// Verifies `token` at `now`: its signature with the configured keys, then its claims.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Claims, Refusal> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Refusal::Malformed("too long".into()));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| Refusal::Malformed(e.to_string()))?;
        let candidates = self.keys.iter().filter(|k| {
            k.algorithm == header.alg
                && match (&header.kid, &k.kid) {
                    (Some(wanted), Some(kid)) => wanted == kid,
                    _ => true,
                }
        });
        for key in candidates {
            let mut validation = Validation::new(key.algorithm);
            // Expiry and not-before are checked below, at `now`, with no leeway.
            validation.required_spec_claims = HashSet::new();
            validation.validate_exp = false;
            validation.validate_nbf = false;
            validation.validate_aud = false;
            match jsonwebtoken::decode::<RawClaims>(token, &key.key, &validation) {
                Ok(data) => return Claims::parse(data.claims, now),
                Err(e) => match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => continue,
                    jsonwebtoken::errors::ErrorKind::Json(_) => {
                        return Err(Refusal::Malformed(e.to_string()));
                    }
                    _ => continue,
                },
            }
        }
        Err(Refusal::BadSignature)
    }

    /// What a connection may do: from its token (at `now`) and URL path, or the anonymous
    /// prefixes without a token.
    pub fn access(
        &self,
        token: Option<&str>,
        url_path: &str,
        now: SystemTime,
    ) -> Result<Access, Refusal> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            if self.anonymous_publish.is_empty() && self.anonymous_subscribe.is_empty() {
                return Err(Refusal::Anonymous);
            }
            return Ok(Access::from_patterns(
                self.anonymous_publish.clone(),
                self.anonymous_subscribe.clone(),
            ));
        };
        let claims = self.verify(token, now)?;
        claims.check_path(url_path)?;
        let rooted = |list: &[Pattern]| list.iter().map(|p| p.rooted(&claims.root)).collect();
        let access = Access::from_patterns(rooted(&claims.publish), rooted(&claims.subscribe));
        Ok(match claims.expires {
            Some(at) => access.with_expiry(at),
            None => access,
        })
    }

    /// Answers a request of moq-relay's auth-server contract (`moq-relay --auth-url`): the
    /// JSON grant (`publish`, `subscribe` patterns relative to the dialed path, `expires`)
    /// for a `connect` or `revalidate` event, `{}` for `end`; or the refusal (HTTP 403).
    pub fn answer_auth_request(&self, body: &[u8]) -> Result<String, Refusal> {
        #[derive(Deserialize)]
        struct Token {
            kind: u64,
            value: String,
        }
        #[derive(Deserialize)]
        struct Request {
            event: String,
            #[serde(default)]
            path: String,
            #[serde(default)]
            query: Option<String>,
            #[serde(default)]
            token: Option<Token>,
        }
        let request: Request =
            serde_json::from_slice(body).map_err(|e| Refusal::Malformed(e.to_string()))?;
        if request.event == "end" {
            return Ok("{}".to_owned());
        }
        let from_query = request.query.as_deref().and_then(|q| {
            q.split('&')
                .filter_map(|kv| kv.strip_prefix("jwt="))
                .rfind(|jwt| !jwt.is_empty())
                .map(str::to_owned)
        });
        let from_setup = match request.token {
            Some(Token { kind: 0, value }) => {
                let engine = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
                let bytes = engine
                    .decode(value.trim_end_matches('='))
                    .map_err(|_| Refusal::Malformed("the SETUP token is not base64url".into()))?;
                Some(
                    String::from_utf8(bytes)
                        .map_err(|_| Refusal::Malformed("the SETUP token is not UTF-8".into()))?,
                )
            }
            Some(Token { kind, .. }) => {
                return Err(Refusal::Malformed(format!(
                    "SETUP token type {kind:#x} is not supported"
                )));
            }
            None => None,
        };
        let token = match (from_setup, from_query) {
            (Some(a), Some(b)) if a != b => {
                return Err(Refusal::Malformed("two different tokens".into()));
            }
            (a, b) => a.or(b),
        };
        let now = SystemTime::now();
        let (publish, subscribe, expires) = match token {
            Some(token) => {
                let claims = self.verify(&token, now)?;
                claims.check_path(&request.path)?;
                (
                    claims.relative_to(&claims.publish, &request.path),
                    claims.relative_to(&claims.subscribe, &request.path),
                    claims.expires,
                )
            }
            None => {
                let open = Claims {
                    root: Vec::new(),
                    publish: self.anonymous_publish.clone(),
                    subscribe: self.anonymous_subscribe.clone(),
                    expires: None,
                };
                (
                    open.relative_to(&open.publish, &request.path),
                    open.relative_to(&open.subscribe, &request.path),
                    None,
                )
            }
        };
        if publish.is_empty() && subscribe.is_empty() {
            return Err(Refusal::Anonymous);
        }
        let texts = |v: &[Pattern]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        let mut grant = serde_json::json!({
            "publish": texts(&publish),
            "subscribe": texts(&subscribe),
        });
        if let Some(at) = expires {
            let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            grant["expires"] = secs.into();
        }
        Ok(grant.to_string())
    }
}

impl AccessControl for JwtAuth {
    fn check(&self, request: &ConnectionRequest) -> Access {
        let path = request.path.as_deref().unwrap_or("/");
        match self.access(request.token.as_deref(), path, SystemTime::now()) {
            Ok(access) => access,
            Err(refusal) => Access::refused(refusal.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn policy(anonymous_subscribe: &[&str]) -> JwtAuth {
        let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET);
        let jwk = format!(
            r#"{{"kty":"oct","alg":"HS256","key_ops":["sign","verify"],"k":"{k}","kid":"k1"}}"#
        );
        // moq-token writes base64url of the JSON.
        let file = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(jwk);
        JwtAuth {
            keys: vec![JwtAuth::parse_key(&file).unwrap()],
            anonymous_publish: Vec::new(),
            anonymous_subscribe: anonymous_subscribe
                .iter()
                .map(|p| Pattern::prefix(p))
                .collect(),
        }
    }

    fn sign(claims: serde_json::Value, secret: &[u8]) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    #[test]
    fn patterns_match_segments() {
        assert!(Pattern::new("live/**").matches("/live/a/b"));
        assert!(Pattern::new("live/**").matches("live"));
        assert!(!Pattern::new("live/**").matches("/liver"));
        assert!(Pattern::new("live/*/video").matches("live/cam/video"));
        assert!(!Pattern::new("live/*/video").matches("live/cam/x/video"));
        assert!(Pattern::new("a").matches("/a"));
        assert!(!Pattern::new("a").matches("/a/b"));
        assert!(Pattern::prefix("").matches("/anything/at/all"));
        assert_eq!(Pattern::new("live/*/video").literal_prefix(), "live");
    }

    #[test]
    fn a_prefix_token_allows_its_paths_under_its_root() {
        let jwt = sign(
            serde_json::json!({"root": "demo", "put": "alice", "get": ["", "x"], "exp": 1_800_000_100}),
            SECRET,
        );
        let access = policy(&[]).access(Some(&jwt), "/", now()).unwrap();
        assert!(access.may_publish(&"/demo/alice/cam".into()));
        assert!(!access.may_publish(&"/demo/bob".into()));
        assert!(!access.may_publish(&"/alice".into()));
        assert!(access.may_subscribe(&"/demo/bob".into()));
        assert!(!access.may_subscribe(&"/other".into()));
        assert_eq!(
            access.expires(),
            Some(UNIX_EPOCH + Duration::from_secs(1_800_000_100))
        );
    }

    #[test]
    fn a_pattern_token_allows_what_its_patterns_match() {
        let jwt = sign(
            serde_json::json!({"publish": ["live/*/video"], "subscribe": ["live/**"]}),
            SECRET,
        );
        let access = policy(&[]).access(Some(&jwt), "/", now()).unwrap();
        assert!(access.may_publish(&"/live/cam/video".into()));
        assert!(!access.may_publish(&"/live/cam/audio".into()));
        assert!(access.may_subscribe(&"/live/cam/audio".into()));
        assert!(
            access
                .publish_prefixes()
                .iter()
                .any(|p| p.matches(&"/live/cam/video".into()))
        );
    }

    #[test]
    fn bad_tokens_are_refused() {
        let p = policy(&[]);
        let good = serde_json::json!({"get": ""});
        let wrong_key = sign(good.clone(), b"another secret of at least 32 bytes!");
        assert_eq!(
            p.access(Some(&wrong_key), "/", now()).unwrap_err(),
            Refusal::BadSignature
        );
        let expired = sign(serde_json::json!({"get": "", "exp": 1_800_000_000}), SECRET);
        assert_eq!(
            p.access(Some(&expired), "/", now()).unwrap_err(),
            Refusal::Expired
        );
        let early = sign(serde_json::json!({"get": "", "nbf": 1_800_000_001}), SECRET);
        assert_eq!(
            p.access(Some(&early), "/", now()).unwrap_err(),
            Refusal::NotYetValid
        );
        let useless = sign(serde_json::json!({"root": "a"}), SECRET);
        assert_eq!(
            p.access(Some(&useless), "/", now()).unwrap_err(),
            Refusal::Useless
        );
        let mixed = sign(serde_json::json!({"get": "", "subscribe": ["**"]}), SECRET);
        assert!(matches!(
            p.access(Some(&mixed), "/", now()),
            Err(Refusal::Malformed(_))
        ));
        let rooted = sign(serde_json::json!({"root": "a", "get": ""}), SECRET);
        assert!(matches!(
            p.access(Some(&rooted), "/b", now()),
            Err(Refusal::RootMismatch { .. })
        ));
        assert!(p.access(Some(&rooted), "/a/room", now()).is_ok());
        assert!(matches!(
            p.access(Some("not.a.jwt"), "/", now()),
            Err(Refusal::Malformed(_))
        ));
        let mut tampered = sign(good, SECRET);
        tampered.insert(tampered.len() - 2, 'x');
        assert!(p.access(Some(&tampered), "/", now()).is_err());
        assert_eq!(p.access(None, "/", now()).unwrap_err(), Refusal::Anonymous);
    }

    #[test]
    fn anonymous_connections_get_the_anonymous_prefixes() {
        let access = policy(&["public"]).access(None, "/", now()).unwrap();
        assert!(access.may_subscribe(&"/public/x".into()));
        assert!(!access.may_subscribe(&"/private".into()));
        assert!(!access.may_publish(&"/public/x".into()));
    }

    #[test]
    fn the_auth_contract_answers_grants_relative_to_the_path() {
        let p = policy(&[]);
        let jwt = sign(
            serde_json::json!({"root": "demo", "put": "alice", "get": "", "exp": 4_000_000_000u64}),
            SECRET,
        );
        let request = serde_json::json!({
            "id": "1", "event": "connect", "node": "n", "transport": "quic",
            "path": "/demo", "query": format!("x=1&jwt={jwt}")
        });
        let grant: serde_json::Value = serde_json::from_str(
            &p.answer_auth_request(request.to_string().as_bytes())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(grant["publish"], serde_json::json!(["alice/**"]));
        assert_eq!(grant["subscribe"], serde_json::json!(["**"]));
        assert_eq!(grant["expires"], 4_000_000_000u64);
        // Above the root: the root's rest is prefixed.
        let request =
            serde_json::json!({"event": "connect", "path": "/", "query": format!("jwt={jwt}")});
        let grant: serde_json::Value = serde_json::from_str(
            &p.answer_auth_request(request.to_string().as_bytes())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(grant["publish"], serde_json::json!(["demo/alice/**"]));
        // Refused: no token and nothing anonymous; a wrong root.
        let request = serde_json::json!({"event": "connect", "path": "/"});
        assert_eq!(
            p.answer_auth_request(request.to_string().as_bytes()),
            Err(Refusal::Anonymous)
        );
        let request = serde_json::json!({"event": "connect", "path": "/other", "query": format!("jwt={jwt}")});
        assert!(
            p.answer_auth_request(request.to_string().as_bytes())
                .is_err()
        );
        let end = serde_json::json!({"event": "end", "path": "/"});
        assert_eq!(
            p.answer_auth_request(end.to_string().as_bytes()).unwrap(),
            "{}"
        );
    }
}
