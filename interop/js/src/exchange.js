// Verified bulk transfer, byte-compatible with `exchange` in tests/support/mod.rs: each
// side writes `len` bytes of a seeded xorshift64 pattern (generated in 64 KiB pieces,
// as the Rust side does) while reading and checking the peer's `len` bytes, then
// half-closes. A reordered, dropped or duplicated chunk shows up as a mismatch.

const CHUNK = 64 * 1024

/** The Rust `Pattern`: xorshift64 on two uint32 halves (BigInt would be slow). */
export class Pattern {
  constructor (seed) {
    const mask = (1n << 64n) - 1n
    const state = ((BigInt(seed) * 0x9E3779B97F4A7C15n) & mask) | 1n
    this.hi = Number(state >> 32n) >>> 0
    this.lo = Number(state & 0xFFFFFFFFn) >>> 0
  }

  /** Fills `buf` as Rust's `fill` does: one state step per 8 bytes, little endian. */
  fill (buf) {
    let hi = this.hi
    let lo = this.lo
    for (let off = 0; off < buf.length; off += 8) {
      // x ^= x << 13
      let nhi = (hi << 13) | (lo >>> 19)
      let nlo = lo << 13
      hi = (hi ^ nhi) >>> 0
      lo = (lo ^ nlo) >>> 0
      // x ^= x >> 7
      nlo = (lo >>> 7) | (hi << 25)
      nhi = hi >>> 7
      hi = (hi ^ nhi) >>> 0
      lo = (lo ^ nlo) >>> 0
      // x ^= x << 17
      nhi = (hi << 17) | (lo >>> 15)
      nlo = lo << 17
      hi = (hi ^ nhi) >>> 0
      lo = (lo ^ nlo) >>> 0
      const n = Math.min(8, buf.length - off)
      for (let i = 0; i < n; i++) {
        buf[off + i] = i < 4 ? (lo >>> (8 * i)) & 0xff : (hi >>> (8 * (i - 4))) & 0xff
      }
    }
    this.hi = hi
    this.lo = lo
  }
}

/** The pattern bytes a `len`-byte transfer seeded `seed` consists of, piece by piece. */
function * pieces (seed, len) {
  const pattern = new Pattern(seed)
  for (let left = len; left > 0;) {
    const piece = new Uint8Array(Math.min(left, CHUNK))
    pattern.fill(piece)
    left -= piece.length
    yield piece
  }
}

async function send (stream, len, seed) {
  for (const piece of pieces(seed, len)) {
    if (!stream.send(piece)) {
      await stream.onDrain()
    }
  }
  await stream.close()
}

async function receive (stream, len, seed) {
  const expected = pieces(seed, len)
  let piece = new Uint8Array(0)
  let at = 0 // offset in `piece`
  let done = 0 // bytes checked
  for await (const chunk of stream) {
    const data = chunk instanceof Uint8Array ? chunk : chunk.subarray()
    for (let i = 0; i < data.length;) {
      if (at === piece.length) {
        const next = expected.next()
        if (next.done) {
          throw new Error(`received more than the ${len} bytes sent`)
        }
        piece = next.value
        at = 0
      }
      const n = Math.min(data.length - i, piece.length - at)
      for (let k = 0; k < n; k++) {
        if (data[i + k] !== piece[at + k]) {
          throw new Error(`received bytes differ from the sent ones at offset ${done + k}`)
        }
      }
      i += n
      at += n
      done += n
    }
  }
  if (done !== len) {
    throw new Error(`stream ended after ${done} of ${len} bytes`)
  }
}

/**
 * Sends `sendLen` bytes seeded `sendSeed` while checking `recvLen` bytes seeded
 * `recvSeed`; resolves to the milliseconds taken, rejects (and resets the stream) on
 * any error.
 */
export async function exchange (stream, { sendLen, recvLen, sendSeed, recvSeed }) {
  const start = performance.now()
  try {
    await Promise.all([send(stream, sendLen, sendSeed), receive(stream, recvLen, recvSeed)])
  } catch (err) {
    stream.abort(err)
    throw err
  }
  return performance.now() - start
}
