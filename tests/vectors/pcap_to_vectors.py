#!/usr/bin/python3
"""Turns a loopback pcap into the golden-vector text format: one datagram per line,
`<index> <src port> <dst port> <family> <hex payload>`, in capture order."""
import struct
import sys

NAMES = {4301: "A(dhtnode)", 4302: "B(python)", 4303: "C(python)", 4304: "R(raw)"}


def main(path):
    data = open(path, "rb").read()
    magic, _, _, _, _, _, linktype = struct.unpack("<IHHiIII", data[:24])
    assert magic == 0xA1B2C3D4, "expected a little-endian microsecond pcap"
    off = 24
    n = 0
    print("# Golden vectors: datagrams between real OpenDHT 2.4.12 nodes on loopback.")
    print("# Made by capture.sh (see README.md). Columns: index src_port dst_port family hex.")
    for name in sorted(NAMES):
        print(f"# port {name}: {NAMES[name]}")
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack("<IIII", data[off:off + 16])
        pkt = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if linktype == 1:  # Ethernet
            ethertype = struct.unpack(">H", pkt[12:14])[0]
            pkt = pkt[14:]
        elif linktype == 113:  # Linux cooked
            ethertype = struct.unpack(">H", pkt[14:16])[0]
            pkt = pkt[16:]
        else:
            raise SystemExit(f"unsupported link type {linktype}")
        if ethertype == 0x0800:
            ihl = (pkt[0] & 0x0F) * 4
            udp = pkt[ihl:]
            fam = "v4"
        elif ethertype == 0x86DD:
            udp = pkt[40:]
            fam = "v6"
        else:
            continue
        sport, dport, length = struct.unpack(">HHH", udp[:6])
        payload = udp[8:length]
        print(f"{n} {sport} {dport} {fam} {payload.hex()}")
        n += 1


main(sys.argv[1])
