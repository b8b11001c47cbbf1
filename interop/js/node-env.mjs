// What js-libp2p 3.x (written for Node >= 22) needs on Node 20. Imported before
// anything from libp2p.
import { WebSocket } from 'ws'

// Node 22 has it; libp2p 3 calls it (stream muxers, dialing).
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

// @libp2p/websockets dials with the global WebSocket, which Node 20 lacks (Node 22
// has one). `ws` verifies TLS with Node's CAs, so a self-signed relay certificate is
// trusted through NODE_EXTRA_CA_CERTS (it has an IP SAN for 127.0.0.1).
if (typeof globalThis.WebSocket !== 'function') {
  globalThis.WebSocket = WebSocket
}
