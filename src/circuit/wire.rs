//! Reading and writing circuit relay v2 messages on a stream, and what a peer's HOP
//! request asks for. Peer bytes: every function here is bounded in what it reads and
//! allocates, and never panics (fuzzed: `fuzz/fuzz_targets/hop_request.rs`).
//!
//! Messages are read exactly: a length prefix read byte by byte, then the body, and not
//! one byte more, so the bytes that follow on an accepted stream (the circuit's own) are
//! left on the stream for the splice.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::PeerId;
use prost::Message;

use super::proto::{hop_message, HopMessage, Status};

/// The largest message read, as libp2p-relay's `MAX_MESSAGE_SIZE`: a HOP or STOP
/// message is a type, a peer id, a few addresses and a limit.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// A varint longer than this cannot be a length under [`MAX_MESSAGE_BYTES`].
const MAX_PREFIX_BYTES: usize = 2;

/// Why no message was read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The stream ended or failed first: nobody is left to answer.
    #[error("stream closed: {0}")]
    Closed(#[from] io::Error),
    /// Bytes that are not a message of ours: answered `MALFORMED_MESSAGE`.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
}

/// Reads one length-prefixed message of at most [`MAX_MESSAGE_BYTES`].
pub async fn read_message<M, S>(stream: &mut S) -> Result<M, ReadError>
where
    M: Message + Default,
    S: AsyncRead + Unpin,
{
    let mut len = 0usize;
    let mut prefix_bytes = 0;
    loop {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await?;
        len |= usize::from(byte[0] & 0x7f) << (7 * prefix_bytes);
        prefix_bytes += 1;
        if byte[0] & 0x80 == 0 {
            break;
        }
        if prefix_bytes == MAX_PREFIX_BYTES {
            return Err(ReadError::Malformed("length prefix over the message cap"));
        }
    }
    if len > MAX_MESSAGE_BYTES {
        return Err(ReadError::Malformed("length over the message cap"));
    }
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await?;
    M::decode(body.as_slice()).map_err(|_| ReadError::Malformed("not a protobuf message"))
}

/// Writes one length-prefixed message and flushes it.
pub async fn write_message<M, S>(stream: &mut S, message: &M) -> io::Result<()>
where
    M: Message,
    S: AsyncWrite + Unpin,
{
    stream
        .write_all(&message.encode_length_delimited_to_vec())
        .await?;
    stream.flush().await
}

/// What a HOP request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HopRequest {
    Reserve,
    Connect { dst: PeerId },
}

/// The request a HOP message makes, or the status the spec answers it with: a STATUS
/// sent as a request is `UNEXPECTED_MESSAGE`; an unknown type, or a CONNECT without a
/// valid peer id, is `MALFORMED_MESSAGE`. The peer's addresses in a CONNECT are ignored
/// (the relay only ever connects to a reservation it holds).
pub fn hop_request(message: &HopMessage) -> Result<HopRequest, Status> {
    match hop_message::Type::try_from(message.r#type) {
        Ok(hop_message::Type::Reserve) => Ok(HopRequest::Reserve),
        Ok(hop_message::Type::Connect) => {
            let peer = message.peer.as_ref().ok_or(Status::MalformedMessage)?;
            let dst = PeerId::from_bytes(&peer.id).map_err(|_| Status::MalformedMessage)?;
            Ok(HopRequest::Connect { dst })
        }
        Ok(hop_message::Type::Status) => Err(Status::UnexpectedMessage),
        Err(_) => Err(Status::MalformedMessage),
    }
}

/// A HOP request body as a peer sends it (without its length prefix): decoded and
/// judged exactly as the relay does. For the fuzz target.
pub fn parse_hop_request(body: &[u8]) -> Result<HopRequest, Status> {
    let message = HopMessage::decode(body).map_err(|_| Status::MalformedMessage)?;
    hop_request(&message)
}

/// A status answer, with the `limit` an accepted request carries.
pub fn hop_status(status: Status, limit: Option<super::proto::Limit>) -> HopMessage {
    HopMessage {
        r#type: hop_message::Type::Status as i32,
        status: Some(status as i32),
        limit,
        ..HopMessage::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::proto::{frame, Peer};

    fn read(bytes: &[u8]) -> Result<HopMessage, ReadError> {
        futures::executor::block_on(read_message(&mut futures::io::Cursor::new(bytes)))
    }

    #[test]
    fn a_message_is_read_exactly_and_what_follows_stays_on_the_stream() {
        let message = HopMessage {
            r#type: hop_message::Type::Connect as i32,
            peer: Some(Peer {
                id: PeerId::random().to_bytes(),
                addrs: Vec::new(),
            }),
            ..HopMessage::default()
        };
        let mut bytes = frame(&message.encode_to_vec());
        let length = bytes.len();
        bytes.extend_from_slice(b"circuit bytes");
        let mut stream = futures::io::Cursor::new(bytes);
        let read: HopMessage =
            futures::executor::block_on(read_message(&mut stream)).expect("a message");
        assert_eq!(read, message);
        assert_eq!(stream.position() as usize, length);
    }

    #[test]
    fn oversized_truncated_and_garbage_input_is_refused_without_reading_it_all() {
        assert!(matches!(
            read(&[0xff, 0xff, 0xff, 0x7f]),
            Err(ReadError::Malformed(_))
        ));
        assert!(matches!(
            read(&frame(&vec![0x08; MAX_MESSAGE_BYTES + 1])),
            Err(ReadError::Malformed(_))
        ));
        assert!(matches!(read(&[10, 1, 2]), Err(ReadError::Closed(_))));
        assert!(matches!(
            read(&frame(&[0xff; 8])),
            Err(ReadError::Malformed(_))
        ));
    }

    #[test]
    fn requests_get_the_status_the_spec_gives_them() {
        let status = hop_status(Status::Ok, None);
        assert_eq!(hop_request(&status), Err(Status::UnexpectedMessage));
        let unknown = HopMessage {
            r#type: 7,
            ..HopMessage::default()
        };
        assert_eq!(hop_request(&unknown), Err(Status::MalformedMessage));
        let no_peer = HopMessage {
            r#type: hop_message::Type::Connect as i32,
            ..HopMessage::default()
        };
        assert_eq!(hop_request(&no_peer), Err(Status::MalformedMessage));
        assert_eq!(parse_hop_request(&[]), Ok(HopRequest::Reserve));
        assert_eq!(parse_hop_request(&[0xff]), Err(Status::MalformedMessage));
    }
}
