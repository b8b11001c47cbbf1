//! Text from peers in the relay's logs. Agent versions, addresses (a `/dns` component
//! is any UTF-8, newlines included), namespaces and protocol names are chosen by
//! whoever connects; printed raw, a newline in them starts a line of the peer's making
//! that reads like one of ours (a forged "reservation accepted", a fake error). So
//! every peer-controlled field is shown through [`escaped`], and the text log's writer
//! ([`OneLinePerEvent`]) escapes whatever control character still reaches it (libp2p's
//! own log lines carry peer data too), so that one event is always one line.

use std::fmt::{self, Write as _};
use std::io;

use tracing_subscriber::fmt::MakeWriter;

/// `value` as text with every control character (and the Unicode line and paragraph
/// separators) escaped the way Rust writes them: `\n`, `\r`, `\u{1b}`.
pub fn escaped<T: fmt::Display>(value: T) -> Escaped<T> {
    Escaped(value)
}

/// See [`escaped`].
pub struct Escaped<T>(T);

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(EscapingWriter(f), "{}", self.0)
    }
}

impl<T: fmt::Display> fmt::Debug for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

struct EscapingWriter<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(at) = rest.find(needs_escape) {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write!(self.0, "{}", c.escape_default())?;
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// The text log's writer: escapes every control byte of an event but its final newline
/// (tracing-subscriber writes each event, newline included, in one call), so nothing a
/// peer managed to put in a field can split the event into several lines. With `ansi`
/// (a person at a terminal) the escape byte stays: the formatter's colours use it, and
/// tracing-subscriber already escapes it inside field values.
pub struct OneLinePerEvent<M> {
    inner: M,
    ansi: bool,
}

impl<M> OneLinePerEvent<M> {
    pub fn new(inner: M, ansi: bool) -> Self {
        OneLinePerEvent { inner, ansi }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for OneLinePerEvent<M> {
    type Writer = OneLine<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        OneLine {
            inner: self.inner.make_writer(),
            ansi: self.ansi,
        }
    }
}

/// See [`OneLinePerEvent`].
pub struct OneLine<W> {
    inner: W,
    ansi: bool,
}

impl<W: io::Write> io::Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, newline) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, true),
            None => (buf, false),
        };
        let mut out = Vec::with_capacity(buf.len() + 8);
        for &byte in body {
            match byte {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.push(byte),
                0x1b if self.ansi => out.push(byte),
                // Control bytes never occur inside a multi-byte UTF-8 character.
                0..=0x1f | 0x7f => out.extend_from_slice(format!("\\x{byte:02x}").as_bytes()),
                _ => out.push(byte),
            }
        }
        if newline {
            out.push(b'\n');
        }
        self.inner.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn control_characters_in_peer_text_are_escaped_and_the_rest_is_kept() {
        let agent = "dusk/1.0\n2030-01-01T00:00:00Z  INFO forged\r\u{1b}[31m\u{2028}é";
        assert_eq!(
            escaped(agent).to_string(),
            "dusk/1.0\\n2030-01-01T00:00:00Z  INFO forged\\r\\u{1b}[31m\\u{2028}é"
        );
        let addr: libp2p::Multiaddr = libp2p::Multiaddr::empty()
            .with(libp2p::multiaddr::Protocol::Dns("a\nb".into()))
            .with(libp2p::multiaddr::Protocol::Tcp(1));
        assert_eq!(escaped(&addr).to_string(), "/dns/a\\nb/tcp/1");
        assert_eq!(escaped("plain text").to_string(), "plain text");
    }

    #[test]
    fn the_text_writer_turns_every_event_into_exactly_one_line() {
        let written = |ansi: bool, event: &[u8]| {
            let mut out = OneLine {
                inner: Vec::new(),
                ansi,
            };
            out.write_all(event).expect("write");
            String::from_utf8(out.inner).expect("utf-8")
        };
        let event = b"INFO identify: new_address=/dns/x\nFORGED\r\x1b[1m\x07\tend\n";
        assert_eq!(
            written(false, event),
            "INFO identify: new_address=/dns/x\\nFORGED\\r\\x1b[1m\\x07\tend\n"
        );
        assert_eq!(
            written(true, event),
            "INFO identify: new_address=/dns/x\\nFORGED\\r\x1b[1m\\x07\tend\n"
        );
        assert_eq!(written(false, "ünïcode\n".as_bytes()), "ünïcode\n");
    }
}
