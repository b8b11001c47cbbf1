// A js-libp2p peer driven by JSON commands, shared by the Node peer (node-peer.mjs,
// commands on stdin) and the browser page (page.js, commands over HTTP). Every
// command carries an `id` its reply echoes: `{id, ok: true, ...}` or
// `{id, ok: false, error}`. Things that happen on their own are `{event, ...}`.

import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { exchange } from './exchange.js'
import { discover, newPrivateKey, register } from './rendezvous.js'

/** The protocol the Rust test clients exchange bytes on (tests/support). */
export const DATA_PROTOCOL = '/dusk-test/data/1.0.0'
/**
 * Handled *without* `runOnLimitedConnection`, to show what a stock handler does on a
 * relayed connection.
 */
export const STRICT_PROTOCOL = '/dusk-test/strict/1.0.0'

/** A connection's limits as JSON (`bytes` is a bigint in js-libp2p), or null. */
function limitsOf (connection) {
  const limits = connection.limits
  if (limits == null) {
    return null
  }
  return {
    bytes: limits.bytes == null ? null : limits.bytes.toString(),
    seconds: limits.seconds ?? null
  }
}

function describe (connection) {
  return {
    remotePeer: connection.remotePeer.toString(),
    remoteAddr: connection.remoteAddr.toString(),
    direction: connection.direction,
    status: connection.status,
    limits: limitsOf(connection)
  }
}

/**
 * A transfer's parameters from a command: `len` bytes each way, or `sendLen` and
 * `recvLen`; `sendSeed` and `recvSeed`.
 */
function transfer ({ len, sendLen, recvLen, sendSeed, recvSeed }) {
  return { sendLen: sendLen ?? len, recvLen: recvLen ?? len, sendSeed, recvSeed }
}

function errorText (err) {
  return `${err?.name ?? 'Error'}: ${err?.message ?? err}`
}

/**
 * Starts a peer with `transports` (factories such as `webSockets()`), reserving on
 * `reserve` (a relay address with /p2p/<relay>) when given. `emit` writes one JSON
 * object to whoever drives the peer. Returns the node and `run(command)`.
 */
export async function startPeer ({ transports, reserve, emit }) {
  const privateKey = await newPrivateKey()
  const node = await createLibp2p({
    privateKey,
    addresses: {
      // js-libp2p reserves on a relay when asked to listen on <relay>/p2p-circuit.
      listen: reserve == null ? [] : [`${reserve}/p2p-circuit`]
    },
    transports: [...transports, circuitRelayTransport()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() },
    // Everything here is on 127.0.0.1, which a browser build refuses to dial by default.
    connectionGater: { denyDialMultiaddr: async () => false }
  })

  // Parameters of the transfers peers will start towards us, in order.
  const served = []

  await node.handle(DATA_PROTOCOL, (stream, connection) => {
    const params = served.shift()
    if (params == null) {
      stream.abort(new Error('no transfer expected: send "serve" first'))
      emit({ event: 'exchange-failed', direction: 'inbound', error: 'unexpected stream' })
      return
    }
    exchange(stream, params).then(ms => {
      emit({ event: 'exchanged', direction: 'inbound', ms, ...params, connection: describe(connection) })
    }, err => {
      emit({ event: 'exchange-failed', direction: 'inbound', error: errorText(err), connection: describe(connection) })
    })
  }, {
    // The relay's circuits carry a (24 h) duration limit, which makes js-libp2p treat
    // every relayed connection as "limited": without this, inbound streams on them
    // are negotiated and then reset.
    runOnLimitedConnection: true
  })

  await node.handle(STRICT_PROTOCOL, (stream, connection) => {
    emit({ event: 'strict-stream', connection: describe(connection) })
    stream.close().catch(() => {})
  })

  const commands = {
    // Addresses, after start: with `reserve`, start() returned once the relay accepted.
    info: async () => ({
      peerId: node.peerId.toString(),
      addrs: node.getMultiaddrs().map(ma => ma.toString())
    }),
    // The next inbound data stream sends/expects these.
    serve: async (command) => {
      served.push(transfer(command))
      return {}
    },
    dial: async ({ addr }) => describe(await node.dial(multiaddr(addr))),
    // Opens a data stream to `addr` (dialing if needed) and runs a transfer on it.
    exchange: async (command) => {
      const { addr, runOnLimitedConnection = true } = command
      const params = transfer(command)
      const stream = await node.dialProtocol(multiaddr(addr), DATA_PROTOCOL, { runOnLimitedConnection })
      const ms = await exchange(stream, params)
      return { ms, ...params }
    },
    // Opens (and closes) a stream, to see whether js-libp2p allows it.
    open: async ({ addr, protocol, runOnLimitedConnection }) => {
      const stream = await node.dialProtocol(multiaddr(addr), protocol, { runOnLimitedConnection })
      await stream.close()
      return {}
    },
    // Rendezvous at `relay` (a multiaddr with /p2p/<relay>), see rendezvous.js.
    register: async (command) => register(node, privateKey, command),
    discover: async (command) => ({ registrations: await discover(node, command) }),
    connections: async () => ({ connections: node.getConnections().map(describe) }),
    stop: async () => {
      await node.stop()
      return {}
    }
  }

  async function run (command) {
    const { id, cmd } = command
    const handler = commands[cmd]
    try {
      if (handler == null) {
        throw new Error(`unknown command ${cmd}`)
      }
      emit({ id, ok: true, ...(await handler(command)) })
    } catch (err) {
      emit({ id, ok: false, error: errorText(err) })
    }
  }

  node.addEventListener('connection:close', evt => {
    emit({ event: 'connection-closed', connection: describe(evt.detail) })
  })

  return { node, run }
}
