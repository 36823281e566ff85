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
}
