//! DISCOVER answers that fit one frame, the cookies that page through them, and the
//! response messages.

use super::*;

/// A DISCOVER response being filled from store pages: registrations (in order) while
/// the response stays under the frame limit and the client's limit.
pub(super) struct Frame {
    pub(super) kept: Vec<StoredRegistration>,
    /// The cookie position: after the last registration kept or skipped.
    pub(super) last: u64,
    pub(super) limit: usize,
    pub(super) used: usize,
    /// Records larger than this are skipped (see [`Frame::fill`]).
    pub(super) max_record_bytes: usize,
    pub(super) skipped: usize,
    /// A registration did not fit: the page ends here.
    pub(super) full: bool,
}

impl Frame {
    const BUDGET: usize = MAX_MESSAGE_BYTES - RESPONSE_OVERHEAD;

    pub(super) fn new(after: u64, limit: usize, max_record_bytes: usize) -> Self {
        Frame {
            kept: Vec::new(),
            last: after,
            limit,
            used: 0,
            max_record_bytes,
            skipped: 0,
            full: false,
        }
    }

    /// Registrations still wanted.
    pub(super) fn room(&self) -> usize {
        self.limit.saturating_sub(self.kept.len())
    }

    /// Response bytes still free.
    pub(super) fn budget(&self) -> usize {
        Self::BUDGET.saturating_sub(self.used)
    }

    /// The store read that fills the rest of this frame.
    pub(super) fn query(&self, namespace: Option<String>) -> PageQuery {
        PageQuery {
            namespace,
            after: self.last,
            limit: self.room(),
            max_bytes: self.budget(),
        }
    }

    pub(super) fn is_full(&self) -> bool {
        self.full || self.room() == 0
    }

    /// Adds `registrations` (in `seq` order) until one does not fit; returns how many
    /// were skipped. A record that could never be sent (larger than the whole frame) or
    /// that this relay would refuse today (over the record limit: stored by an older
    /// relay sharing the store) is skipped and the cookie moves past it. Kept, it
    /// would end every page before what follows it: one registration under
    /// `dusk/peer/<victim>` would hide the victim from everyone.
    pub(super) fn fill(&mut self, registrations: Vec<StoredRegistration>) -> usize {
        let mut skipped = 0;
        for registration in registrations {
            if self.is_full() {
                break;
            }
            let size = entry_bytes(&registration.namespace, &registration.record);
            if registration.record.len() > self.max_record_bytes || size > Self::BUDGET {
                skipped += 1;
                self.last = registration.seq;
                continue;
            }
            if self.used + size > Self::BUDGET {
                self.full = true;
                break;
            }
            self.used += size;
            self.last = registration.seq;
            self.kept.push(registration);
        }
        self.skipped += skipped;
        skipped
    }
}

/// The cookie rust-libp2p's client expects: 8 bytes big-endian, then the namespace
/// (empty for all namespaces). Ours carries the last sequence number the client has
/// seen, so it is valid on every relay sharing the store and needs no server state.
pub(crate) struct Cookie {
    pub(super) after: u64,
    pub(super) namespace: String,
}

impl Cookie {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut bytes = self.after.to_be_bytes().to_vec();
        bytes.extend_from_slice(self.namespace.as_bytes());
        bytes
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Cookie> {
        let (seq, namespace) = bytes.split_first_chunk::<8>()?;
        Some(Cookie {
            after: u64::from_be_bytes(*seq),
            namespace: String::from_utf8(namespace.to_vec()).ok()?,
        })
    }
}

pub(super) fn register_response(
    status: ResponseStatus,
    text: &str,
    ttl: Option<u64>,
) -> proto::Message {
    proto::Message {
        r#type: Some(MessageType::RegisterResponse as i32),
        register_response: Some(proto::RegisterResponse {
            status: Some(status as i32),
            status_text: (!text.is_empty()).then(|| text.to_owned()),
            ttl,
        }),
        ..Default::default()
    }
}

pub(super) fn discover_ok(
    registrations: Vec<StoredRegistration>,
    cookie: Vec<u8>,
) -> proto::Message {
    discover_message(proto::DiscoverResponse {
        registrations: registrations
            .into_iter()
            .map(|r| proto::Register {
                ns: Some(r.namespace),
                signed_peer_record: Some(r.record),
                ttl: Some(r.ttl_secs),
            })
            .collect(),
        cookie: Some(cookie),
        status: Some(ResponseStatus::Ok as i32),
        status_text: None,
    })
}

pub(super) fn discover_error(status: ResponseStatus, text: &str) -> proto::Message {
    discover_message(proto::DiscoverResponse {
        registrations: Vec::new(),
        cookie: None,
        status: Some(status as i32),
        status_text: Some(text.to_owned()),
    })
}

pub(super) fn discover_message(response: proto::DiscoverResponse) -> proto::Message {
    proto::Message {
        r#type: Some(MessageType::DiscoverResponse as i32),
        discover_response: Some(response),
        ..Default::default()
    }
}
