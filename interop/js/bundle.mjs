// Bundles the browser peer (src/page.js and what it imports) with esbuild into
// dist/page.js, and copies src/index.html beside it. Writes each file under a
// temporary name and renames it, so a test reading dist/ never sees half a file.
import { build } from 'esbuild'
import { copyFileSync, mkdirSync, renameSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const dist = join(here, 'dist')
mkdirSync(dist, { recursive: true })

await build({
  entryPoints: [join(here, 'src', 'page.js')],
  outfile: join(dist, 'page.js.tmp'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  // Debian 12's chromium is far newer; libp2p 3 uses ES2022 (top-level await, #private).
  target: 'es2022',
  sourcemap: 'inline',
  logLevel: 'warning'
})
renameSync(join(dist, 'page.js.tmp'), join(dist, 'page.js'))
copyFileSync(join(here, 'src', 'index.html'), join(dist, 'index.html.tmp'))
renameSync(join(dist, 'index.html.tmp'), join(dist, 'index.html'))
