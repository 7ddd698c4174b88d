#!/usr/bin/env bash
# Re-captures the golden vectors from real OpenDHT 2.4.12 nodes on loopback.
# Needs root (tcpdump), and Debian's dhtnode, python3-opendht, python3-msgpack and tcpdump.
# Writes opendht-2.4.12.txt next to this script. Processes are cleaned up by PID.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
pcap="$work/capture.pcap"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

tcpdump -i lo -U -w "$pcap" 'udp and portrange 4301-4304' 2>"$work/tcpdump.log" &
pids+=($!)
for _ in $(seq 50); do grep -q listening "$work/tcpdump.log" && break; sleep 0.1; done

/usr/bin/dhtnode -s -p 4301 </dev/null >"$work/dhtnode.log" 2>&1 &
pids+=($!)
sleep 1

/usr/bin/python3 "$here/capture.py"
sleep 1
kill -INT "${pids[0]}"
sleep 1

/usr/bin/python3 "$here/pcap_to_vectors.py" "$pcap" >"$here/opendht-2.4.12.txt"
echo "wrote $(grep -vc '^#' "$here/opendht-2.4.12.txt") datagrams"
