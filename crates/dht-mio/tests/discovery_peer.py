"""One OpenDHT node with peer discovery on, driven line by line from stdin (for
tests/discovery.rs). Replies start with "re". Only synchronous calls: a Python callback while
getRoutingTablesLog holds the GIL would deadlock OpenDHT 4.4.2 (docs/discovery.md)."""
import socket
import sys
import time

import opendht as dht

port, network = int(sys.argv[1]), int(sys.argv[2])
cfg = dht.DhtConfig()
cfg.setPeerDiscovery(True, True)
cfg.setNetwork(network)
r = dht.DhtRunner()
r.run(port=port, config=cfg)
print("re ready", r.getNodeId(), flush=True)

for line in sys.stdin:
    w = line.split()
    if not w:
        continue
    if w[0] == "wait":  # wait HEXID 4|6 SECONDS: until HEXID is in that routing table
        fam = socket.AF_INET if w[2] == "4" else socket.AF_INET6
        end = time.time() + float(w[3])
        found = False
        while time.time() < end and not found:
            found = w[1] in r.getRoutingTablesLog(fam)
            if not found:
                time.sleep(0.1)
        print("re", "found" if found else "missing", flush=True)
    elif w[0] == "put":  # put KEY DATA
        r.put(dht.InfoHash.get(w[1]), dht.Value(w[2].encode()))
        print("re put", flush=True)
    elif w[0] == "get":  # get KEY DATA SECONDS: until DATA is among KEY's values
        end = time.time() + float(w[3])
        got = False
        while time.time() < end and not got:
            got = any(bytes(v.data) == w[2].encode() for v in r.get(dht.InfoHash.get(w[1])))
            if not got:
                time.sleep(0.2)
        print("re", "got" if got else "missing", flush=True)
    elif w[0] == "quit":
        break
r.join()
print("re bye", flush=True)
