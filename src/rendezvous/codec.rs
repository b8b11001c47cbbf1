//! `/rendezvous/1.0.0` framing for `request_response`: one unsigned-varint
//! length-prefixed protobuf message each way. Responses may be up to 1 MiB (the spec's
//! and rust-libp2p's limit); requests only as large as the server is willing to read
//! (a REGISTER needs its record, a namespace and a few bytes, not 1 MiB), so a stream
//! costs the relay at most that much memory whatever length its prefix declares.
//!
//! Requests are decoded only as far as protobuf: the server validates their content and
//! answers a bad one with its status code, where a codec error would just reset the
//! stream.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use prost::Message as _;

use super::proto::Message;

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/rendezvous/1.0.0");

/// Largest message either side may send.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Codec {
    /// Largest request read; never above [`MAX_MESSAGE_BYTES`].
    max_request_bytes: usize,
}

impl Codec {
    pub fn new(max_request_bytes: usize) -> Self {
        Codec {
            max_request_bytes: max_request_bytes.min(MAX_MESSAGE_BYTES),
        }
    }
}

/// Reads one message of at most `max` bytes; the length is checked before anything is
/// allocated for the body.
async fn read_message<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Message> {
    let len = unsigned_varint::aio::read_usize(&mut *io)
        .await
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("rendezvous message of {len} bytes is over the {max}-byte limit"),
        ));
    }
    let mut buf = vec![0; len];
    io.read_exact(&mut buf).await?;
    Message::decode(buf.as_slice()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

async fn write_message<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    message: Message,
) -> io::Result<()> {
    let body = message.encode_to_vec();
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "rendezvous message over the size limit",
        ));
    }
    let mut len = unsigned_varint::encode::usize_buffer();
    io.write_all(unsigned_varint::encode::usize(body.len(), &mut len))
        .await?;
    io.write_all(&body).await?;
    // request_response closes the stream after writing.
    io.flush().await
}

impl libp2p::request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Message;
    type Response = Message;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Message>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_message(io, self.max_request_bytes).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Message>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_message(io, MAX_MESSAGE_BYTES).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Message,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_message(io, req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Message,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_message(io, res).await
    }
}
