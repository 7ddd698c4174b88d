#!/usr/bin/env bash
# Runs bench.py on rdht (a release build), Debian's python3-opendht (2.4.12) and the opendht
# 4.4.2 wheel, side by side: ROUNDS rounds, each running the three one after the other, then
# prints every run's JSON line and a table of the medians. Not a test.
#   crates/dht-python/bench/run.sh [NODES] [PAIRS] [ROUNDS]
# rdht is pip-installed (maturin's default profile: release) into RDHT_BENCH_VENV (default
# target/py-bench-venv); opendht 4.4.2 comes from RDHT_OPENDHT4_VENV (run-tests.sh makes it).
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
nodes="${1:-100}"
pairs="${2:-2000}"
rounds="${3:-5}"
venv="${RDHT_BENCH_VENV:-$root/target/py-bench-venv}"
odht4="${RDHT_OPENDHT4_VENV:-$root/target/py-opendht4-venv}/bin/python"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT

[ -x "$venv/bin/python" ] || python3 -m venv "$venv" || exit 1
[ -x "$venv/bin/maturin" ] || "$venv/bin/pip" install --quiet "maturin>=1.5,<2" || exit 1
# The release build (pip builds through maturin's PEP 517 backend, release by default).
PATH="$venv/bin:$PATH" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}" MATURIN_PEP517_ARGS="--profile release" \
    "$venv/bin/pip" install --quiet --force-reinstall --no-deps --no-build-isolation "$root/crates/dht-python" || exit 1

for r in $(seq "$rounds"); do
    echo "round $r/$rounds" >&2
    "$venv/bin/python" "$here/bench.py" rdht "$nodes" "$pairs" | tee -a "$out"
    /usr/bin/python3 "$here/bench.py" opendht "$nodes" "$pairs" | tee -a "$out" \
        || echo '{"module": "opendht", "version": "2.4.12", "error": "not run"}'
    "$odht4" "$here/bench.py" opendht "$nodes" "$pairs" | tee -a "$out" \
        || echo '{"module": "opendht", "version": "4.4.2", "error": "not run"}'
done

python3 - "$out" <<'EOF'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    if "error" not in d:
        runs.setdefault(f"{d['module']} {d['version'].split()[0]}", []).append(d)
cols = ["pairs_per_s", "put_ms_p50", "get_ms_p50", "put_ms_p99", "get_ms_p99", "listen_after_put_ms_p50"]
print("medians of", {k: len(v) for k, v in runs.items()}, "runs")
print("| | " + " | ".join(cols) + " |")
med = {k: {c: statistics.median(r[c] for r in v) for c in cols} for k, v in runs.items()}
for k, m in med.items():
    print(f"| {k} | " + " | ".join(f"{m[c]:g}" for c in cols) + " |")
ours = next((m["pairs_per_s"] for k, m in med.items() if k.startswith("rdht")), None)
for k, m in med.items():
    if ours and not k.startswith("rdht"):
        print(f"rdht / {k}: {ours / m['pairs_per_s']:.2f}x pairs/s")
EOF
