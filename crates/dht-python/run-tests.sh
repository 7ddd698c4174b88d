#!/usr/bin/env bash
# Builds and installs the rdht Python module in a fresh venv and runs its pytest suite.
#
#   crates/dht-python/run-tests.sh [pytest args...]
#
# Needs python3 with venv and pip reaching PyPI (maturin, pytest, opendht==4.4.2), and a Rust
# toolchain. Interop with Debian's python3-opendht (2.4.12) uses /usr/bin/python3; install it
# with `apt-get install -y python3-opendht`. Interop tests skip when an OpenDHT is missing,
# unless DHT_REQUIRE_OPENDHT=1, which makes them fail instead.
# Environment: RDHT_VENV (default target/py-venv), RDHT_OPENDHT4_VENV (default
# target/py-opendht4-venv); CARGO_TARGET_DIR is honoured by the build.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"
venv="${RDHT_VENV:-$root/target/py-venv}"
odht_venv="${RDHT_OPENDHT4_VENV:-$root/target/py-opendht4-venv}"
start=$(date +%s)

rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet "maturin>=1.5,<2" "pytest>=7"
# `pip install` builds the wheel through maturin (PEP 517), as a user would; a debug build
# unless MATURIN_PEP517_ARGS says otherwise (tests need no optimised build).
export MATURIN_PEP517_ARGS="${MATURIN_PEP517_ARGS---profile dev}"
PATH="$venv/bin:$PATH" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}" \
    "$venv/bin/pip" install --quiet --no-build-isolation "$here"

# The newest OpenDHT from PyPI, in its own venv (kept between runs: it only downloads a wheel).
if [ ! -x "$odht_venv/bin/python" ] || ! "$odht_venv/bin/python" -c 'import opendht' 2>/dev/null; then
    rm -rf "$odht_venv"
    if "$python" -m venv "$odht_venv" && "$odht_venv/bin/pip" install --quiet "opendht==4.4.2"; then
        :
    else
        echo "run-tests.sh: could not install opendht==4.4.2; its interop tests will skip" >&2
    fi
fi
export RDHT_OPENDHT4_PYTHON="$odht_venv/bin/python"

cd "$here/tests"
set +e
timeout 1200 "$venv/bin/python" -m pytest -q -rs -p no:cacheprovider "$@"
rc=$?
set -e
echo "run-tests.sh: pytest exit $rc after $(( $(date +%s) - start )) s"
exit $rc
