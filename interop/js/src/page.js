// The browser peer: js-libp2p with the WebSockets transport only, reserving on the
// relay over WSS. The page that loads it (served by tests/interop_browser.rs) is its
// only link to the test: it reads `/config`, long-polls commands from `/command` and
// posts replies and events (the same JSON as the Node peer's, see peer.js) to
// `/report`.
import { webSockets } from '@libp2p/websockets'
import { startPeer } from './peer.js'

// Reports leave in order, one at a time.
let reports = Promise.resolve()
function emit (message) {
  const body = JSON.stringify(message)
  reports = reports.then(() => fetch('/report', { method: 'POST', body })).catch(err => {
    console.error('cannot report', body, err)
  })
}

window.addEventListener('error', evt => {
  emit({ event: 'page-error', error: String(evt.error ?? evt.message) })
})
window.addEventListener('unhandledrejection', evt => {
  emit({ event: 'page-error', error: String(evt.reason?.stack ?? evt.reason) })
})

async function main () {
  const config = await (await fetch('/config')).json()
  let peer
  try {
    peer = await startPeer({ transports: [webSockets()], reserve: config.relay, emit })
  } catch (err) {
    emit({ event: 'start-failed', error: `${err?.name}: ${err?.message}` })
    return
  }
  const { node, run } = peer
  emit({
    event: 'started',
    peerId: node.peerId.toString(),
    addrs: node.getMultiaddrs().map(ma => ma.toString()),
    userAgent: navigator.userAgent
  })
  // Commands run concurrently; the test answers 204 when it has none for a while.
  for (;;) {
    const response = await fetch('/command')
    if (response.status === 200) {
      run(await response.json())
    } else if (response.status !== 204) {
      emit({ event: 'page-error', error: `GET /command answered ${response.status}` })
      return
    }
  }
}

main().catch(err => emit({ event: 'page-error', error: String(err?.stack ?? err) }))
