#!/usr/bin/python3
"""Builds the committed seed corpus from the golden vectors (tests/vectors/*.txt).
Needs python3-msgpack. Run from the repository root: /usr/bin/python3 fuzz/make_corpus.py"""
import hashlib
import os
import struct

import msgpack

root = os.path.dirname(os.path.abspath(__file__))
vectors = os.path.join(root, "..", "tests", "vectors", "opendht-2.4.12.txt")


def save(target, data):
    d = os.path.join(root, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


rows = []
for line in open(vectors):
    if line.startswith("#") or not line.strip():
        continue
    i, sport, dport, fam, hexdata = line.split()
    rows.append((int(sport), bytes.fromhex(hexdata)))

for _, d in rows:
    if len(d) < 4096:
        save("decode_message", d)


def values_in(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "values" and isinstance(v, list):
                for x in v:
                    if isinstance(x, dict):
                        yield x
            else:
                yield from values_in(v)


seen_values = set()
for _, d in rows:
    try:
        m = msgpack.unpackb(d, raw=False, strict_map_key=False)
    except Exception:
        continue
    for v in values_in(m):
        b = msgpack.packb(v, use_bin_type=True)
        if b not in seen_values:
            seen_values.add(b)
            save("decode_value", b)

# Reassembly: runs of consecutive datagrams from one source (headers followed by their parts).
def record(src, step, dgram):
    return bytes([src % 3, step]) + struct.pack("<H", len(dgram)) + dgram

run = b""
for n, (sport, d) in enumerate(rows):
    run += record(sport, 1, d)
    if n % 12 == 11:
        save("reassembly", run)
        run = b""
if run:
    save("reassembly", run)

for q in ["", "SELECT *", "SELECT id", "SELECT id,seq WHERE id=5", "WHERE user_type=\"text/plain\"",
          "where value_type=3,id=42", "SELECT owner_pk WHERE owner_pk=40bd001563085fc35165329ea1ff5c5ecbdbbeef"]:
    save("query_parse", q.encode())
