//! REGISTER, UNREGISTER and DISCOVER: each request checked against dusk's policy and
//! the per-source limits, then answered from the store off the event loop.

use super::*;

impl Server {
    pub(super) fn register(
        &mut self,
        peer: PeerId,
        ip: Option<IpAddr>,
        register: proto::Register,
    ) -> Work {
        let namespace = register.ns.clone();
        let refuse = |status: ResponseStatus, reason: String| {
            Work::ready(Pending {
                response: Some(register_response(status, &reason, None)),
                event: Some(Event::RegisterRefused {
                    peer,
                    namespace: namespace.clone(),
                    status,
                    reason,
                }),
                ..Pending::silent()
            })
        };
        // First, before anything costs the relay: a refused request is cheap.
        if let Err(reason) = self.sources.check_rate(peer, ip) {
            return refuse(ResponseStatus::EUnavailable, reason);
        }
        let ns = match check_namespace(register.ns.as_deref()) {
            Ok(ns) => ns.to_owned(),
            Err(reason) => return refuse(ResponseStatus::EInvalidNamespace, reason),
        };
        let ttl = register.ttl.unwrap_or(DEFAULT_TTL_SECS);
        let max_ttl = self.policy.max_ttl();
        if ttl < self.policy.min_ttl || ttl > max_ttl {
            return refuse(
                ResponseStatus::EInvalidTtl,
                format!("ttl {ttl}s is outside {}..={max_ttl}s", self.policy.min_ttl),
            );
        }
        let Some(bytes) = register.signed_peer_record else {
            return refuse(
                ResponseStatus::EInvalidSignedPeerRecord,
                "no signed peer record".into(),
            );
        };
        if let Err((status, reason)) = check_record(
            &self.policy,
            self.local_peer_id,
            &self.own_addrs,
            peer,
            &bytes,
        ) {
            return refuse(status, reason);
        }
        if self.draining.load(Ordering::Relaxed) {
            return refuse(
                ResponseStatus::EUnavailable,
                "the relay is shutting down; register with another relay".into(),
            );
        }
        // Last: a slot is taken only by a request the store will see.
        let now = Instant::now();
        let expires = now.checked_add(Duration::from_secs(ttl)).unwrap_or(now);
        let slot = match self.sources.reserve((ns.clone(), peer), ip, expires, now) {
            Ok(slot) => slot,
            Err(reason) => return refuse(ResponseStatus::EUnavailable, reason),
        };

        let store = self.store.clone();
        let caps = self.policy.caps;
        let registration = NewRegistration {
            namespace: ns.clone(),
            peer,
            record: bytes,
            ttl: Duration::from_secs(ttl),
        };
        let future = async move {
            let outcome =
                match tokio::time::timeout(STORE_TIMEOUT, store.register(registration, caps)).await
                {
                    Ok(Ok(outcome)) => Ok(outcome),
                    Ok(Err(e)) => Err((STORE_UNAVAILABLE, format!("{STORE_UNAVAILABLE}: {e}"))),
                    Err(_) => {
                        let text = "the registration store did not answer in time";
                        Err((text, text.to_owned()))
                    }
                };
            let stored = matches!(outcome, Ok(RegisterOutcome::Registered));
            // `told` goes to the peer, `logged` to the log (it may name store internals).
            let refused = |status: ResponseStatus, told: &str, logged: String| Pending {
                response: Some(register_response(status, told, None)),
                event: Some(Event::RegisterRefused {
                    peer,
                    namespace: Some(ns.clone()),
                    status,
                    reason: logged,
                }),
                ..Pending::silent()
            };
            let mut done = match outcome.map(|outcome| caps.refusal(outcome)) {
                Ok(None) => {
                    let total = count(&*store).await;
                    Pending {
                        response: Some(register_response(ResponseStatus::Ok, "", Some(ttl))),
                        event: Some(Event::Registered {
                            peer,
                            namespace: ns,
                            ttl,
                            total,
                        }),
                        ..Pending::silent()
                    }
                }
                Ok(Some(reason)) => refused(ResponseStatus::EUnavailable, &reason, reason.clone()),
                Err((told, logged)) => refused(ResponseStatus::EUnavailable, told, logged),
            };
            done.sources = Bookkeeping::Settle { slot, stored };
            done
        };
        Work {
            future: future.boxed(),
        }
    }

    pub(super) fn unregister(&self, peer: PeerId, unregister: proto::Unregister) -> Work {
        // UNREGISTER has no response: the channel is dropped either way.
        let Ok(ns) = check_namespace(unregister.ns.as_deref()).map(str::to_owned) else {
            return Work::ready(Pending::silent());
        };
        let store = self.store.clone();
        let future = async move {
            match tokio::time::timeout(STORE_TIMEOUT, store.unregister(ns.clone(), peer)).await {
                Ok(Ok(())) => Pending {
                    event: Some(Event::Unregistered {
                        peer,
                        namespace: ns.clone(),
                        total: count(&*store).await,
                    }),
                    sources: Bookkeeping::Release((ns, peer)),
                    ..Pending::silent()
                },
                _ => Pending::silent(),
            }
        };
        Work {
            future: future.boxed(),
        }
    }

    pub(super) fn discover(&self, peer: PeerId, discover: proto::Discover) -> Work {
        let refuse = |status: ResponseStatus, reason: String| {
            Work::ready(Pending {
                response: Some(discover_error(status, &reason)),
                event: Some(Event::DiscoverRefused {
                    peer,
                    status,
                    reason,
                }),
                ..Pending::silent()
            })
        };
        let namespace = match discover.ns.as_deref() {
            None if !self.policy.allow_discover_all => {
                return refuse(
                    ResponseStatus::EInvalidNamespace,
                    "this relay answers DISCOVER for one namespace at a time; name one".into(),
                )
            }
            None => None,
            Some(ns) => match check_namespace(Some(ns)) {
                Ok(ns) => Some(ns.to_owned()),
                Err(reason) => return refuse(ResponseStatus::EInvalidNamespace, reason),
            },
        };
        let after = match discover.cookie.as_deref() {
            None => 0,
            Some(cookie) => match Cookie::decode(cookie) {
                Some(cookie) if cookie.namespace == namespace.clone().unwrap_or_default() => {
                    cookie.after
                }
                _ => {
                    return refuse(
                        ResponseStatus::EInvalidCookie,
                        "the cookie is malformed or belongs to another namespace".into(),
                    )
                }
            },
        };
        let limit = match discover.limit {
            None | Some(0) => MAX_DISCOVER_LIMIT,
            Some(n) => usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(MAX_DISCOVER_LIMIT),
        };
        let store = self.store.clone();
        let max_record_bytes = self.policy.max_record_bytes;
        let future = async move {
            let mut frame = Frame::new(after, limit, max_record_bytes);
            // One read, and more only while records had to be skipped and there is room:
            // a skipped record must not leave the page short of what follows it.
            for _ in 0..MAX_DISCOVER_READS {
                let page = match tokio::time::timeout(
                    STORE_TIMEOUT,
                    store.discover(frame.query(namespace.clone())),
                )
                .await
                {
                    Ok(Ok(page)) => page,
                    Ok(Err(e)) => {
                        return refused_discover(peer, format!("{STORE_UNAVAILABLE}: {e}"))
                    }
                    Err(_) => {
                        return refused_discover(
                            peer,
                            "the registration store did not answer in time".into(),
                        )
                    }
                };
                let read = page.registrations.len();
                let skipped = frame.fill(page.registrations);
                if skipped == 0 || read == 0 || frame.is_full() {
                    break;
                }
            }
            if frame.skipped > 0 {
                debug!(
                    skipped = frame.skipped,
                    max_record_bytes, "DISCOVER skipped stored records too large to send"
                );
            }
            let returned = frame.kept.len();
            let cookie = Cookie {
                after: frame.last,
                namespace: namespace.unwrap_or_default(),
            };
            Pending {
                response: Some(discover_ok(frame.kept, cookie.encode())),
                event: Some(Event::Discovered { peer, returned }),
                ..Pending::silent()
            }
        };
        Work {
            future: future.boxed(),
        }
    }
}

/// The answer when too many store operations are in flight.
pub(super) fn busy(answer: MessageType) -> Pending {
    let reason = "the relay is busy; retry shortly";
    let response = match answer {
        MessageType::RegisterResponse => Some(register_response(
            ResponseStatus::EUnavailable,
            reason,
            None,
        )),
        MessageType::DiscoverResponse => Some(discover_error(ResponseStatus::EUnavailable, reason)),
        _ => None,
    };
    Pending {
        response,
        ..Pending::silent()
    }
}

/// A store failure: the peer is told [`STORE_UNAVAILABLE`] or that it timed out, the
/// log gets `reason`.
pub(super) fn refused_discover(peer: PeerId, reason: String) -> Pending {
    let told = if reason.starts_with(STORE_UNAVAILABLE) {
        STORE_UNAVAILABLE
    } else {
        &reason
    };
    Pending {
        response: Some(discover_error(ResponseStatus::EUnavailable, told)),
        event: Some(Event::DiscoverRefused {
            peer,
            status: ResponseStatus::EUnavailable,
            reason,
        }),
        ..Pending::silent()
    }
}

pub(super) async fn count(store: &dyn Store) -> Option<usize> {
    tokio::time::timeout(STORE_TIMEOUT, store.count())
        .await
        .ok()
        .and_then(Result::ok)
}

/// Whether `bytes`, the signed peer record of a REGISTER from `peer`, may be stored: its
/// size, signature, owner, number of addresses and (unless direct addresses are allowed)
/// that each address is a circuit through this relay. Peer bytes: fuzzed
/// (`fuzz/fuzz_targets/rendezvous_request.rs`).
pub fn check_record(
    policy: &Policy,
    relay: PeerId,
    own_addrs: &OwnAddresses,
    peer: PeerId,
    bytes: &[u8],
) -> Result<(), (ResponseStatus, String)> {
    let invalid = |reason: String| Err((ResponseStatus::EInvalidSignedPeerRecord, reason));
    // Before parsing: a big record costs no signature check.
    if bytes.len() > policy.max_record_bytes {
        return invalid(format!(
            "the signed peer record is {} bytes, over this relay's limit of {} bytes",
            bytes.len(),
            policy.max_record_bytes
        ));
    }
    let record = SignedEnvelope::from_protobuf_encoding(bytes)
        .map_err(|e| e.to_string())
        .and_then(|envelope| PeerRecord::from_signed_envelope(envelope).map_err(|e| e.to_string()))
        .map_err(|e| {
            (
                ResponseStatus::EInvalidSignedPeerRecord,
                format!("invalid signed peer record: {e}"),
            )
        })?;
    if record.peer_id() != peer {
        return Err((
            ResponseStatus::ENotAuthorized,
            "the signed peer record is not the registrant's".into(),
        ));
    }
    let addrs = record.addresses();
    if addrs.len() > policy.max_record_addrs {
        return invalid(format!(
            "the record holds {} addresses, over this relay's limit of {}",
            addrs.len(),
            policy.max_record_addrs
        ));
    }
    if !policy.allow_direct_addresses {
        let foreign = addrs
            .iter()
            .filter(|a| !is_circuit_via(a, relay, own_addrs, peer))
            .count();
        if foreign > 0 {
            // The addresses themselves stay out of the reason: it is logged, and they
            // are the peer's text.
            return invalid(format!(
                "the record holds {foreign} address(es) that are not circuit addresses \
                 through this relay (/p2p/{relay}/p2p-circuit, after nothing or one of \
                 this relay's own addresses); this relay publishes relayed addresses \
                 through itself only, so no peer learns another's IP"
            ));
        }
    }
    Ok(())
}

pub(crate) fn check_namespace(ns: Option<&str>) -> Result<&str, String> {
    match ns {
        None | Some("") => Err("no namespace".into()),
        Some(ns) if ns.len() > MAX_NAMESPACE_BYTES => Err(format!(
            "namespace of {} bytes is over the {MAX_NAMESPACE_BYTES}-byte limit",
            ns.len()
        )),
        Some(ns) => Ok(ns),
    }
}
