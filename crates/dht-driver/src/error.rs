//! The errors every driver can return, in one enum.

use std::io;
use std::net::SocketAddr;

/// Why a driver could not start, or why a call failed.
///
/// One enum for every driver, so a program (or a binding) that moves between them handles the
/// same cases. A driver returns only the variants that can happen to it; each variant says which.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: io::Error,
    },
    /// Neither family could be bound (or none was asked for).
    #[error("no socket bound")]
    NoSocket,
    /// Setting up the driver's own machinery failed: a poller, a waker, a thread, a socket's
    /// registration with a reactor.
    #[error("poll: {0}")]
    Io(io::Error),
    /// A host name did not resolve to any address.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The name as given.
        host: String,
        /// Why.
        reason: String,
    },
    /// The node has shut down (or its driver has ended): no command reaches it any more.
    #[error("the node has shut down")]
    Closed,
    /// The node refused the command.
    #[error(transparent)]
    Command(#[from] dht_proto::CommandError),
    /// No answer within the time given.
    #[error("timed out")]
    Timeout,
    /// A waiting call was made from the thread that runs the node (from a callback): it would
    /// deadlock. Only drivers that run callbacks on their own thread (dht-mio) return it.
    #[error("a waiting call from the runner's own thread would deadlock")]
    OnRunnerThread,
}
