//! Errors: the caller's mistakes in commands. (Bad remote input is never an error: it is
//! dropped and counted, see [`crate::DropReason`].)

/// A caller's mistake in a command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The key is the zero hash.
    #[error("the zero key cannot be used")]
    ZeroKey,
    /// The value does not fit its type's size limit.
    #[error("value of {size} bytes is larger than {max}")]
    ValueTooLarge {
        /// Serialized size.
        size: usize,
        /// Largest allowed.
        max: usize,
    },
    /// Too many searches at once.
    #[error("too many searches ({0})")]
    TooManySearches(usize),
    /// The node is shutting down.
    #[error("node is shutting down")]
    ShuttingDown,
    /// No such put or listen.
    #[error("unknown operation")]
    UnknownOperation,
    /// A signed or encrypted put needs an identity (`Config::identity`).
    #[error("no identity configured")]
    NoIdentity,
}
