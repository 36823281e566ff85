//! Identifiers and sequence numbers that cross module boundaries.

use std::fmt;

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// Values must be below `2^62`; larger ones fail to encode.
        #[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
        pub struct $name(pub u64);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<u64> for $name {
            fn from(v: u64) -> Self {
                Self(v)
            }
        }
    };
}

id_newtype!(
    /// A subscription's ID, chosen by the subscriber and never reused in a session (§7.5).
    SubscribeId
);
id_newtype!(
    /// The absolute sequence number of a group within its track (§3.4).
    GroupSequence
);
id_newtype!(
    /// A relay's hop ID in an ANNOUNCE hop list; 0 means "unknown hop" (§7.4).
    HopId
);

impl GroupSequence {
    /// The following sequence, or `None` at the top of the range.
    pub fn next(self) -> Option<Self> {
        self.0.checked_add(1).map(Self)
    }

    /// A sequence derived from wall-clock time: the number of `period`s since the Unix
    /// epoch (the caller reads the clock). A publisher that starts each new group at least
    /// `period` after the last, and continues from this after a restart, gives its
    /// subscribers increasing group numbers across the restart, and two redundant
    /// publishers of the same broadcast give the same numbers for the same time.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use moq_proto::GroupSequence;
    /// let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    /// assert_eq!(GroupSequence::from_time(at, Duration::from_secs(2)), GroupSequence(850_000_000));
    /// ```
    pub fn from_time(time: std::time::SystemTime, period: std::time::Duration) -> Self {
        let since = time
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let period = period.as_nanos().max(1);
        // Below 2^62 for any time this side of the year 2100 with periods of a microsecond
        // or more; capped there in any case.
        Self(
            u64::try_from(since / period)
                .unwrap_or(u64::MAX)
                .min((1 << 62) - 1),
        )
    }
}
