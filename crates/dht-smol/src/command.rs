//! What handles send to the driver, and what the driver sends back on a get's channel.

use std::net::SocketAddr;

use dht_proto::value::{Query, Value};
use dht_proto::{InfoHash, PutOptions, PutOutcome};
use smol::channel::Sender;

use crate::{Change, Error, GetId, ListenId, PutMode};

pub(crate) enum GetMsg {
    Values(Vec<Value>),
    Done(Result<dht_driver::GetSummary, Error>),
}

pub(crate) type Inspect = Box<dyn FnOnce(&mut dht_proto::Node, dht_proto::Instant) + Send>;
pub(crate) type GetSink = Sender<GetMsg>;
pub(crate) type PutSink = Sender<Result<PutOutcome, Error>>;
pub(crate) type ListenSink = Sender<Result<Change, Error>>;

// A put carries a value and maybe a key: the size of a command is not worth a box per message.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Command {
    Bootstrap(SocketAddr),
    Get(GetId, InfoHash, Query, GetSink),
    CancelGet(GetId),
    Put(InfoHash, Value, PutOptions, PutMode, PutSink),
    CancelPut(InfoHash, u64),
    Listen(ListenId, InfoHash, Query, ListenSink),
    CancelListen(ListenId),
    With(Inspect),
    Shutdown(Sender<()>),
}
