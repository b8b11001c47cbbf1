//! Text from peers in the relay's logs. Agent versions, addresses (a `/dns` component
//! is any UTF-8, newlines included), namespaces and protocol names are chosen by
//! whoever connects; printed raw, a newline in them starts a line of the peer's making
//! that reads like one of ours (a forged "reservation accepted", a fake error). The text
//! log's writer ([`OneLinePerEvent`]) escapes every control character (and the Unicode
//! line and paragraph separators) in an event, whoever logged it (libp2p's own lines
//! carry peer data too), so one event is always one line. The JSON format needs nothing:
//! JSON strings escape control characters themselves.

use std::io;

use tracing_subscriber::fmt::MakeWriter;

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
        let mut out = String::with_capacity(buf.len() + 8);
        for c in String::from_utf8_lossy(body).chars() {
            match c {
                '\t' => out.push(c),
                '\u{1b}' if self.ansi => out.push(c),
                c if needs_escape(c) => out.extend(c.escape_default()),
                c => out.push(c),
            }
        }
        if newline {
            out.push('\n');
        }
        self.inner.write_all(out.as_bytes())?;
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
    fn the_text_writer_turns_every_event_into_exactly_one_line() {
        let written = |ansi: bool, event: &[u8]| {
            let mut out = OneLine {
                inner: Vec::new(),
                ansi,
            };
            out.write_all(event).expect("write");
            String::from_utf8(out.inner).expect("utf-8")
        };
        let event = "INFO identify: new_address=/dns/x\nFORGED\r\x1b[1m\x07\u{2028}\tend\n";
        assert_eq!(
            written(false, event.as_bytes()),
            "INFO identify: new_address=/dns/x\\nFORGED\\r\\u{1b}[1m\\u{7}\\u{2028}\tend\n"
        );
        assert_eq!(
            written(true, event.as_bytes()),
            "INFO identify: new_address=/dns/x\\nFORGED\\r\x1b[1m\\u{7}\\u{2028}\tend\n"
        );
        assert_eq!(written(false, "ünïcode\n".as_bytes()), "ünïcode\n");
    }
}
