#!/usr/bin/env sh
# Makes a development CA and a WSS certificate it signs, for localhost, 127.0.0.1, ::1
# and the names given: DIR/ca-cert.pem (trust it), DIR/cert.pem + DIR/key.pem (give them
# to the relay as DUSK_RELAY_TLS_CERT and DUSK_RELAY_TLS_KEY). Never overwrites files.
#
#   certs/gen-dev-cert.sh DIR [NAME...]
set -eu
if [ "$#" -lt 1 ]; then
  echo "usage: $0 DIR [NAME...]" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -x "$here/target/release/dusk-relay" ]; then
  exec "$here/target/release/dusk-relay" gen-cert "$@"
elif command -v dusk-relay >/dev/null 2>&1; then
  exec dusk-relay gen-cert "$@"
else
  exec cargo run --release --quiet --manifest-path "$here/Cargo.toml" -- gen-cert "$@"
fi
