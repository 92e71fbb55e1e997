//! Errors of the operations that can fail, one enum each.

use bytes::Bytes;
use thiserror::Error;

use crate::config::ChannelId;
use crate::fragment::FragmentError;

/// Why [`Endpoint::send`](crate::Endpoint::send) refused a message. The message is handed back.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SendError {
    /// No connection has this id (it was never opened, or it is closed).
    #[error("no such connection")]
    UnknownConnection(Bytes),
    /// The connection is still handshaking or is closing.
    #[error("the connection is not established")]
    NotConnected(Bytes),
    /// The channel id is not in the layout for this direction.
    #[error("no channel {0:?} in this direction")]
    UnknownChannel(ChannelId, Bytes),
    /// The message exceeds the channel's `max_message_size`.
    #[error("message of {size} bytes exceeds the {max}-byte limit of channel {channel:?}")]
    TooLarge {
        /// The channel.
        channel: ChannelId,
        /// The message's size in bytes.
        size: usize,
        /// The channel's limit in bytes.
        max: usize,
        /// The message.
        data: Bytes,
    },
    /// The channel's send buffer (`max_buffered_bytes`) is full: the peer is not keeping up.
    /// Retry after it drains, or drop the message.
    #[error("send buffer of channel {channel:?} is full")]
    BufferFull {
        /// The channel.
        channel: ChannelId,
        /// The message.
        data: Bytes,
    },
}

impl SendError {
    /// The refused message.
    pub fn into_data(self) -> Bytes {
        match self {
            Self::UnknownConnection(data)
            | Self::NotConnected(data)
            | Self::UnknownChannel(_, data)
            | Self::TooLarge { data, .. }
            | Self::BufferFull { data, .. } => data,
        }
    }
}

/// Why [`Endpoint::connect`](crate::Endpoint::connect) could not start a connection.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ConnectError {
    /// There is already a connection to this address on this endpoint.
    #[error("already connected or connecting to {0}")]
    AlreadyConnected(std::net::SocketAddr),
    /// The address is unspecified (0.0.0.0 or ::) or has port 0.
    #[error("cannot connect to {0}: give a concrete IP address and a non-zero port")]
    InvalidAddress(std::net::SocketAddr),
}

/// A peer broke a channel rule in a well-formed frame; the frame is dropped and counted.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub(crate) enum Violation {
    /// A message larger than the channel allows.
    #[error("message larger than the channel allows")]
    MessageTooLarge,
    /// A bad fragment, or reassembly over budget.
    #[error("fragment: {0}")]
    Fragment(#[from] FragmentError),
    /// A reliable message id outside the window the sender may use.
    #[error("reliable message id outside the window")]
    OutsideWindow,
}
