//! The byte streams packets travel over.

use tokio::io::{AsyncRead, AsyncWrite};

use super::packet::PacketStream;

/// A transport: plain TCP or TLS over it, to a client or a backend.
pub trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ClientIo for T {}

/// A client's packet stream.
pub type ClientStream = PacketStream<Box<dyn ClientIo>>;
