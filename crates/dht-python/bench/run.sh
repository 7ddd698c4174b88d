#!/usr/bin/env bash
# Runs bench.py on rdht, Debian's python3-opendht (2.4.12) and the opendht 4.4.2 wheel, one
# after the other, on loopback. Uses the venvs run-tests.sh made (target/py-venv,
# target/py-opendht4-venv). Not a test: it prints one JSON line per implementation.
#   crates/dht-python/bench/run.sh [NODES] [PAIRS]
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
nodes="${1:-100}"
pairs="${2:-300}"
"${RDHT_VENV:-$root/target/py-venv}/bin/python" "$here/bench.py" rdht "$nodes" "$pairs"
/usr/bin/python3 "$here/bench.py" opendht "$nodes" "$pairs" || echo '{"module": "opendht 2.4.12", "error": "not run"}'
"${RDHT_OPENDHT4_VENV:-$root/target/py-opendht4-venv}/bin/python" "$here/bench.py" opendht "$nodes" "$pairs" \
    || echo '{"module": "opendht 4.4.2", "error": "not run"}'
