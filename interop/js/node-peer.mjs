#!/usr/bin/env node
// A js-libp2p peer in Node (TCP, WebSockets, circuit relay client), driven by JSON
// lines: commands on stdin, replies and events on stdout (see src/peer.js). Logs go
// to stderr (DEBUG=libp2p:* for js-libp2p's own).
//
//   node node-peer.mjs [--reserve <relay multiaddr with /p2p/<id>>]
//
// The first line is `{"event":"started","peerId":..,"addrs":[..]}`, written once the
// peer is listening (and, with --reserve, holds a reservation on the relay). It exits
// when stdin closes.
import './node-env.mjs'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { createInterface } from 'node:readline'
import { startPeer } from './src/peer.js'

function emit (message) {
  process.stdout.write(JSON.stringify(message) + '\n')
}

const args = process.argv.slice(2)
let reserve
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--reserve' && i + 1 < args.length) {
    reserve = args[++i]
  } else {
    console.error(`usage: node node-peer.mjs [--reserve <relay multiaddr>] (got ${args[i]})`)
    process.exit(2)
  }
}

let peer
try {
  peer = await startPeer({ transports: [tcp(), webSockets()], reserve, emit })
} catch (err) {
  emit({ event: 'start-failed', error: `${err?.name}: ${err?.message}` })
  console.error(err)
  process.exit(1)
}
const { node, run } = peer
emit({
  event: 'started',
  peerId: node.peerId.toString(),
  addrs: node.getMultiaddrs().map(ma => ma.toString())
})

const lines = createInterface({ input: process.stdin })
lines.on('line', line => {
  if (line.trim() === '') {
    return
  }
  let command
  try {
    command = JSON.parse(line)
  } catch (err) {
    emit({ event: 'bad-command', line, error: err.message })
    return
  }
  run(command)
})
lines.on('close', () => {
  node.stop().finally(() => process.exit(0))
})
