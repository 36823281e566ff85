//! Broadcast paths and announce prefixes (spec §6.1, decisions D11 and D20).
//!
//! Implementations disagree on the shape of a path: gomoqt requires `/`-rooted paths
//! (`/demo`) and prefixes that are `/` or `/…/`, while moq-net strips slashes (`demo`, root
//! prefix `""`). We compare and route in one normalised form — no leading or trailing `/`, no
//! empty segments — so `demo`, `/demo` and `/demo/` name the same broadcast, and we always
//! *send* the gomoqt form, which both accept.

use std::fmt;
use std::sync::Arc;

/// The name of a broadcast, compared in normalised form.
///
/// `BroadcastPath::new("demo")`, `new("/demo")` and `new("//demo/")` are equal and hash
/// equal. On the wire it is written `/`-rooted (`/demo`).
///
/// Cloning is cheap (a reference count): every table that names a broadcast shares one copy
/// of its path.
///
/// ```
/// use moq_proto::BroadcastPath;
/// let path = BroadcastPath::new("/rooms/42/cam");
/// assert!(path == "/rooms/42/cam" && path == "rooms/42/cam");
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BroadcastPath(Arc<str>);

impl BroadcastPath {
    /// Builds a path from any form, normalising it.
    pub fn new(path: &str) -> Self {
        Self(normalise(path).into())
    }

    /// The normalised form: segments joined by `/`, without leading or trailing `/`
    /// (`/cam` gives `cam`). To compare with a path in any form, compare the path itself:
    /// `path == "/cam"` normalises the string first. [`Display`](std::fmt::Display) shows
    /// the `/`-rooted form.
    ///
    /// ```
    /// let path = moq_proto::BroadcastPath::new("/cam");
    /// assert_eq!(path.as_str(), "cam");
    /// assert!(path == "/cam" && path == "cam/");
    /// assert_eq!(path.to_string(), "/cam");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `/`-rooted form sent on the wire (`/demo`, or `/` for the empty path).
    pub fn to_wire(&self) -> String {
        let mut s = String::with_capacity(self.0.len() + 1);
        s.push('/');
        s.push_str(&self.0);
        s
    }

    /// The length in bytes of [`BroadcastPath::to_wire`].
    pub fn wire_len(&self) -> usize {
        self.0.len() + 1
    }

    /// How many segments it has (`/live/cam` has 2).
    pub fn segments(&self) -> usize {
        if self.0.is_empty() {
            0
        } else {
            self.0.split('/').count()
        }
    }

    /// Whether the path has no segment at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for BroadcastPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.0)
    }
}

impl fmt::Debug for BroadcastPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BroadcastPath({self})")
    }
}

/// Equal when the string, normalised, is this path (`/cam`, `cam` and `cam/` all match).
impl PartialEq<str> for BroadcastPath {
    fn eq(&self, other: &str) -> bool {
        if is_normalised(other) {
            *self.0 == *other
        } else {
            *self.0 == *normalise(other)
        }
    }
}

/// See `PartialEq<str>`.
impl PartialEq<&str> for BroadcastPath {
    fn eq(&self, other: &&str) -> bool {
        self == *other
    }
}

impl From<&str> for BroadcastPath {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for BroadcastPath {
    /// Normalises in place when only leading or trailing `/` need trimming (the usual
    /// `/demo` wire form), so a decoded path costs no second allocation.
    fn from(mut s: String) -> Self {
        let end = s.trim_end_matches('/').len();
        s.truncate(end);
        let start = s.len() - s.trim_start_matches('/').len();
        s.drain(..start);
        if is_normalised(&s) {
            Self(s.into())
        } else {
            Self::new(&s)
        }
    }
}

/// An announce prefix: the string as it travels on the wire, and the key it matches with.
///
/// Matching is byte-wise (the draft's rule, D11) but on normalised forms (D20): the key is
/// the normalised prefix, followed by `/` when the prefix ended with one. So `/live/` matches
/// `/live/cam1` but not `/live` or `/livestream`; `/live` (or moq-net's `live`) matches all
/// three; `/` and `""` match everything.
///
/// ```
/// use moq_proto::{BroadcastPath, PathPrefix};
/// let rooms = PathPrefix::new("rooms/");
/// assert!(rooms.matches(&BroadcastPath::new("/rooms/42")));
/// assert!(!rooms.matches(&BroadcastPath::new("/roomsX")));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PathPrefix {
    raw: String,
    key: String,
}

impl PathPrefix {
    /// A prefix for local use, canonicalised to the form every peer accepts: `/` for the
    /// root, else `/a/b/` (gomoqt rejects anything else, D11).
    pub fn new(prefix: &str) -> Self {
        let norm = normalise(prefix);
        if norm.is_empty() {
            return Self::root();
        }
        let mut raw = String::with_capacity(norm.len() + 2);
        raw.push('/');
        raw.push_str(&norm);
        raw.push('/');
        let mut key = norm;
        key.push('/');
        Self { raw, key }
    }

    /// The root prefix `/`, which matches every broadcast.
    pub fn root() -> Self {
        Self {
            raw: "/".to_owned(),
            key: String::new(),
        }
    }

    /// A prefix exactly as a peer sent it; any string is accepted (D11, D20).
    pub fn from_wire(raw: String) -> Self {
        let mut key = normalise(&raw);
        if !key.is_empty() && raw.ends_with('/') {
            key.push('/');
        }
        Self { raw, key }
    }

    /// The string sent on the wire.
    pub fn as_wire(&self) -> &str {
        &self.raw
    }

    /// If `path` falls under this prefix, the suffix that completes it: `raw + suffix` names
    /// `path` in both the gomoqt and the moq-net reading.
    pub fn suffix_of<'p>(&self, path: &'p BroadcastPath) -> Option<&'p str> {
        path.as_str().strip_prefix(self.key.as_str())
    }

    /// Whether `path` falls under this prefix.
    pub fn matches(&self, path: &BroadcastPath) -> bool {
        self.suffix_of(path).is_some()
    }

    /// The full path named by a suffix received under this prefix (plain concatenation, then
    /// normalisation).
    pub fn join(&self, suffix: &str) -> BroadcastPath {
        let mut full = String::with_capacity(self.raw.len() + suffix.len());
        full.push_str(&self.raw);
        full.push_str(suffix);
        BroadcastPath::from(full)
    }
}

impl Default for PathPrefix {
    fn default() -> Self {
        Self::root()
    }
}

impl fmt::Debug for PathPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PathPrefix({:?})", self.raw)
    }
}

impl fmt::Display for PathPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

fn is_normalised(s: &str) -> bool {
    !s.starts_with('/') && !s.ends_with('/') && !s.contains("//")
}

fn normalise(s: &str) -> String {
    if is_normalised(s) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    for segment in s.split('/').filter(|seg| !seg.is_empty()) {
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(segment);
    }
    out
}

#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for BroadcastPath {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Self::new(u.arbitrary::<&str>()?))
    }
}

#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for PathPrefix {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Self::from_wire(u.arbitrary::<String>()?))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{Hash, Hasher};

    use super::*;

    fn hash(p: &BroadcastPath) -> u64 {
        let mut h = DefaultHasher::new();
        p.hash(&mut h);
        h.finish()
    }

    #[test]
    fn forms_compare_and_hash_equal() {
        let forms = ["demo", "/demo", "/demo/", "//demo//", "demo/"];
        let first = BroadcastPath::new(forms[0]);
        for f in forms {
            let p = BroadcastPath::new(f);
            assert_eq!(p, first, "{f}");
            assert_eq!(hash(&p), hash(&first), "{f}");
            assert_eq!(p.to_wire(), "/demo");
        }
        assert_eq!(BroadcastPath::new("/a//b/").as_str(), "a/b");
        assert_eq!(BroadcastPath::from("x//y".to_owned()).as_str(), "x/y");
        assert_eq!(BroadcastPath::from("//a/b//".to_owned()).as_str(), "a/b");
        assert_eq!(BroadcastPath::from("/".to_owned()).as_str(), "");
        assert_ne!(BroadcastPath::new("/a/b"), BroadcastPath::new("/ab"));
    }

    #[test]
    fn local_prefixes_use_the_gomoqt_form() {
        assert_eq!(PathPrefix::new("").as_wire(), "/");
        assert_eq!(PathPrefix::new("/").as_wire(), "/");
        assert_eq!(PathPrefix::new("live").as_wire(), "/live/");
        assert_eq!(PathPrefix::new("/live/eu").as_wire(), "/live/eu/");
    }

    #[test]
    fn root_prefixes_match_everything_in_both_forms() {
        let path = BroadcastPath::new("/interop/server");
        for raw in ["/", ""] {
            let prefix = PathPrefix::from_wire(raw.to_owned());
            let suffix = prefix.suffix_of(&path).unwrap();
            assert_eq!(suffix, "interop/server");
            assert_eq!(prefix.join(suffix), path);
        }
    }

    #[test]
    fn slash_terminated_prefix_matches_whole_segments() {
        let prefix = PathPrefix::from_wire("/live/".to_owned());
        assert_eq!(
            prefix.suffix_of(&BroadcastPath::new("/live/cam1")),
            Some("cam1")
        );
        assert!(!prefix.matches(&BroadcastPath::new("/live")));
        assert!(!prefix.matches(&BroadcastPath::new("/livestream")));
        assert_eq!(prefix.join("cam1"), BroadcastPath::new("live/cam1"));
    }

    #[test]
    fn bare_prefix_matches_byte_wise() {
        for raw in ["/live", "live"] {
            let prefix = PathPrefix::from_wire(raw.to_owned());
            for full in ["/live", "/live/cam1", "/livestream"] {
                let path = BroadcastPath::new(full);
                let suffix = prefix.suffix_of(&path).unwrap();
                assert_eq!(prefix.join(suffix), path, "{raw} + {suffix}");
            }
            assert!(!prefix.matches(&BroadcastPath::new("/other")));
        }
    }
}
