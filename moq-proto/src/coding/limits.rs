//! Limits on everything a peer controls (spec §8).

/// Limits applied while decoding peer input.
///
/// Every length and count read from the wire is checked against these before anything is
/// allocated, and counts are clamped by the bytes actually present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest control message body accepted, in bytes. Default 1 MiB: control messages are
    /// a few dozen bytes in practice (gomoqt allows 50 MiB).
    pub max_message_size: usize,
    /// Largest frame payload accepted, in bytes. Default 50 MiB, as gomoqt.
    pub max_frame_size: usize,
    /// Longest path, track name, prefix or URI accepted, in bytes. Default 64 KiB.
    pub max_string_len: usize,
    /// Most hop IDs accepted in one ANNOUNCE. Default 64.
    pub max_hops: usize,
    /// Most segments (`/`-separated parts) in a broadcast path, prefix or announce suffix.
    /// Default 64.
    pub max_path_segments: usize,
}

impl Limits {
    /// The largest frame we send to anyone, and the default receive limit (50 MiB).
    pub const MAX_FRAME_SIZE: usize = 50 * 1024 * 1024;
    /// The longest string we send, and the default receive limit (64 KiB).
    pub const MAX_STRING_LEN: usize = 64 * 1024;
    /// The most hop IDs we send, and the default receive limit.
    pub const MAX_HOPS: usize = 64;
    /// The default path segment limit.
    pub const MAX_PATH_SEGMENTS: usize = 64;
    /// The default control message limit (1 MiB).
    pub const MAX_MESSAGE_SIZE: usize = 1024 * 1024;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: Self::MAX_MESSAGE_SIZE,
            max_frame_size: Self::MAX_FRAME_SIZE,
            max_string_len: Self::MAX_STRING_LEN,
            max_hops: Self::MAX_HOPS,
            max_path_segments: Self::MAX_PATH_SEGMENTS,
        }
    }
}
