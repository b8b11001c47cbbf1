// A rendezvous client for the js peers (libp2p/specs rendezvous: `/rendezvous/1.0.0`,
// one unsigned-varint length-prefixed protobuf message each way per stream, as
// rust-libp2p's client and the relay's server speak it; the messages are
// proto/rendezvous.proto). js-libp2p has no maintained one, and the tests need one to
// show that js peers find each other through the relay as the dusk client does.
// REGISTER and DISCOVER of one namespace only: no UNREGISTER and no paging by cookie,
// which no test here needs.

import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import { PeerRecord, RecordEnvelope } from '@libp2p/peer-record'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { reader, writer } from 'protons-runtime'

export const RENDEZVOUS_PROTOCOL = '/rendezvous/1.0.0'

/** The spec's (and the relay's) largest message. */
const MAX_MESSAGE_BYTES = 1024 * 1024

/**
 * Longer than the relay's own store timeout (2 s) with room for a busy machine, shorter
 * than the test's command timeout, so a silent relay fails the command with a reason.
 */
const REQUEST_TIMEOUT_MS = 20_000

const REGISTER = 0
const REGISTER_RESPONSE = 1
const DISCOVER = 3
const DISCOVER_RESPONSE = 4

/** ResponseStatus names, for errors a test can match on. */
const STATUS = {
  0: 'OK',
  100: 'E_INVALID_NAMESPACE',
  101: 'E_INVALID_SIGNED_PEER_RECORD',
  102: 'E_INVALID_TTL',
  103: 'E_INVALID_COOKIE',
  200: 'E_NOT_AUTHORIZED',
  300: 'E_INTERNAL_ERROR',
  400: 'E_UNAVAILABLE'
}

/** What a relay refused, as `E_NAME (code): its status text`. */
export class RendezvousError extends Error {
  name = 'RendezvousError'
  constructor (status, text) {
    super(`${STATUS[status] ?? 'unknown status'} (${status}): ${text}`)
    this.status = status
  }
}

/**
 * The peer's key, made here rather than by libp2p: libp2p 3 does not hand its key
 * out, and a REGISTER needs it to sign the peer record.
 */
export async function newPrivateKey () {
  return generateKeyPair('Ed25519')
}

// Protobuf tags: field number << 3 | wire type (0 varint, 2 length-delimited).
const varintField = field => field << 3
const bytesField = field => (field << 3) | 2

function encodeRequest (type, field, fill) {
  const w = writer()
  w.uint32(varintField(1)).int32(type)
  w.uint32(bytesField(field)).fork()
  fill(w)
  w.ldelim()
  return w.finish()
}

/**
 * Fields of one (sub)message, from `r` until `end`: `on(field, wireType)` reads the
 * fields it knows and returns true; the rest are skipped, as protobuf requires.
 */
function readFields (r, end, on) {
  while (r.pos < end) {
    const tag = r.uint32()
    if (!on(tag >>> 3, tag & 7)) {
      r.skipType(tag & 7)
    }
  }
}

/** Reads a submessage's length; returns where it ends. */
function endOfSubmessage (r) {
  const len = r.uint32()
  return r.pos + len
}

function decodeRegistration (r, end) {
  const registration = {}
  readFields(r, end, field => {
    switch (field) {
      case 1: registration.namespace = r.string(); return true
      case 2: registration.signedPeerRecord = r.bytes(); return true
      case 3: registration.ttl = r.uint64Number(); return true
      default: return false
    }
  })
  return registration
}

/** RegisterResponse: status, statusText, ttl. */
function decodeRegisterResponse (r, end, message) {
  readFields(r, end, field => {
    switch (field) {
      case 1: message.status = r.int32(); return true
      case 2: message.statusText = r.string(); return true
      case 3: message.ttl = r.uint64Number(); return true
      default: return false
    }
  })
}

/** DiscoverResponse: registrations, status, statusText (the cookie is not used here). */
function decodeDiscoverResponse (r, end, message) {
  readFields(r, end, field => {
    switch (field) {
      case 1: message.registrations.push(decodeRegistration(r, endOfSubmessage(r))); return true
      case 3: message.status = r.int32(); return true
      case 4: message.statusText = r.string(); return true
      default: return false
    }
  })
}

/** A response: `{type, status, statusText}` with `ttl` or `registrations`. */
function decodeResponse (bytes) {
  const r = reader(bytes)
  const message = { registrations: [] }
  readFields(r, r.len, (field, wireType) => {
    if (field === 1) {
      message.type = r.int32()
      return true
    }
    // Only the response bodies: the other fields are requests, which a server never sends.
    const body = { 3: decodeRegisterResponse, 6: decodeDiscoverResponse }[field]
    if (body == null || wireType !== 2) {
      return false
    }
    body(r, endOfSubmessage(r), message)
    return true
  })
  return message
}

/** Sends one request to `relay` (a multiaddr with /p2p/<relay>) and reads its response. */
async function request (node, relay, bytes, expected) {
  const signal = AbortSignal.timeout(REQUEST_TIMEOUT_MS)
  const stream = await node.dialProtocol(multiaddr(relay), RENDEZVOUS_PROTOCOL, { signal })
  try {
    const lp = lpStream(stream, { maxDataLength: MAX_MESSAGE_BYTES })
    await lp.write(bytes, { signal })
    const response = decodeResponse((await lp.read({ signal })).subarray())
    if (response.type !== expected) {
      throw new Error(`expected a response of type ${expected}, got ${response.type}`)
    }
    // proto2: an absent status is the default, OK.
    if ((response.status ?? 0) !== 0) {
      throw new RendezvousError(response.status, response.statusText ?? '')
    }
    return response
  } finally {
    await stream.close().catch(() => {})
  }
}

/** The peer id at the end of `addr`, the relay's. */
function relayIdOf (addr) {
  const id = multiaddr(addr).getComponents().findLast(c => c.name === 'p2p')?.value
  if (id == null) {
    throw new Error(`${addr} names no relay: it needs /p2p/<relay id>`)
  }
  return id
}

/**
 * How a peer record is signed. The spec's format (RFC 0002/0003: domain
 * `libp2p-peer-record`, payload type multicodec 0x0301) is what js-libp2p and
 * go-libp2p make; rust-libp2p's `PeerRecord::from_signed_envelope` accepts only its own
 * older one (the same payload under domain `libp2p-routing-state` and payload type
 * `/libp2p/routing-state-record`). The relay checks records with it, and so does
 * rust-libp2p's rendezvous client for every registration of a DISCOVER response (one
 * it cannot read fails the whole response): a dusk client discovers a js peer only if
 * the js peer signs the rust-libp2p way, which is therefore the default here.
 */
export const RECORD_FORMATS = {
  'rust-libp2p': {
    domain: 'libp2p-routing-state',
    payloadType: new TextEncoder().encode('/libp2p/routing-state-record')
  },
  spec: { domain: PeerRecord.DOMAIN, payloadType: PeerRecord.CODEC }
}

function sameBytes (a, b) {
  return a.length === b.length && a.every((byte, i) => byte === b[i])
}

/**
 * Registers `node` (whose key is `privateKey`) in `namespace` at `relay` for `ttl`
 * seconds (the relay's default when absent), its record signed in `format` (a key of
 * RECORD_FORMATS). The record holds the node's circuit addresses through that relay
 * only: the relay refuses any other address, so that discovery never hands out an IP.
 * Returns the granted TTL and the addresses.
 */
export async function register (node, privateKey, { relay, namespace, ttl, format = 'rust-libp2p' }) {
  const { domain, payloadType } = RECORD_FORMATS[format] ?? {}
  if (domain == null) {
    throw new Error(`unknown record format ${format}: one of ${Object.keys(RECORD_FORMATS)}`)
  }
  const via = `/p2p/${relayIdOf(relay)}/p2p-circuit`
  const addrs = node.getMultiaddrs().filter(ma => ma.toString().includes(via))
  if (addrs.length === 0) {
    throw new Error(`no circuit address through ${relay}: reserve there first`)
  }
  const record = new PeerRecord({ peerId: node.peerId, multiaddrs: addrs })
  // seal() signs whatever domain and payload type the record names.
  const envelope = await RecordEnvelope.seal({ domain, codec: payloadType, marshal: () => record.marshal() }, privateKey)
  const bytes = encodeRequest(REGISTER, 2, w => {
    w.uint32(bytesField(1)).string(namespace)
    w.uint32(bytesField(2)).bytes(envelope.marshal())
    if (ttl != null) {
      w.uint32(varintField(3)).uint64Number(ttl)
    }
  })
  const response = await request(node, relay, bytes, REGISTER_RESPONSE)
  return { ttl: response.ttl ?? null, addrs: addrs.map(ma => ma.toString()) }
}

/** A registration's record, once its signature (in either format) and signer are checked. */
async function openRecord (bytes) {
  const envelope = RecordEnvelope.createFromProtobuf(bytes)
  const [format, { domain }] = Object.entries(RECORD_FORMATS)
    .find(([, f]) => sameBytes(f.payloadType, envelope.payloadType)) ?? [null, {}]
  if (format == null || !(await envelope.validate(domain))) {
    throw new Error('a registration holds a record that is no validly signed peer record')
  }
  const record = PeerRecord.createFromProtobuf(envelope.payload)
  if (!record.peerId.equals(peerIdFromPublicKey(envelope.publicKey))) {
    throw new Error(`a record for ${record.peerId} is signed by another key`)
  }
  return { record, format }
}

/**
 * The registrations in `namespace` at `relay` (the first page): each record's
 * signature is checked, and that it is signed by the peer it names, before its peer id
 * and addresses are believed.
 */
export async function discover (node, { relay, namespace, limit }) {
  const bytes = encodeRequest(DISCOVER, 5, w => {
    w.uint32(bytesField(1)).string(namespace)
    if (limit != null) {
      w.uint32(varintField(2)).uint64Number(limit)
    }
  })
  const response = await request(node, relay, bytes, DISCOVER_RESPONSE)
  return Promise.all(response.registrations.map(async registration => {
    const { record, format } = await openRecord(registration.signedPeerRecord)
    return {
      peerId: record.peerId.toString(),
      addrs: record.multiaddrs.map(ma => ma.toString()),
      format,
      namespace: registration.namespace,
      ttl: registration.ttl ?? null
    }
  }))
}
