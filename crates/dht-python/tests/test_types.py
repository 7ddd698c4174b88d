"""The value classes: InfoHash, PkId, Value, ValueType, Query/Select/Where, SockAddr, node
records and the crypto names (ed25519)."""

import datetime
import os
import pickle

import pytest

import rdht as dht


def test_infohash_get_hex_compare_hash():
    h = dht.InfoHash.get("123")
    assert str(h) == "40bd001563085fc35165329ea1ff5c5ecbdbbeef"
    assert h.toString() == b"40bd001563085fc35165329ea1ff5c5ecbdbbeef"
    assert h.hex() == h.decode() == str(h)
    assert repr(h) == "<InfoHash '40bd001563085fc35165329ea1ff5c5ecbdbbeef'>"
    same = dht.InfoHash(b"40BD001563085FC35165329EA1FF5C5ECBDBBEEF")
    assert same == h and not (same != h) and same <= h and same >= h
    assert dht.InfoHash("40bd001563085fc35165329ea1ff5c5ecbdbbeef") == h  # str accepted too
    assert {h: 1}[same] == 1 and len({h, same}) == 1
    assert bytes(h) == bytes.fromhex(str(h)) and len(bytes(h)) == 20
    assert dht.InfoHash.fromBytes(bytes(h)) == h
    assert h.getId() == h
    zero = dht.InfoHash()
    assert not zero and bool(h) and zero < h and h > zero
    assert dht.InfoHash(b"") == zero
    a, b = dht.InfoHash.getRandom(), dht.InfoHash.getRandom()
    assert a != b
    assert sorted([b, a]) == sorted([a, b])
    assert dht.InfoHash.get(b"123") == h  # bytes keys hash the same
    assert pickle.loads(pickle.dumps(h)) == h


def test_infohash_bits_and_float():
    z = dht.InfoHash()
    z.setBit(0, True)
    assert z.getBit(0) and not z.getBit(1)
    assert str(z).startswith("80")
    assert z.toFloat() == pytest.approx(0.5)
    assert dht.InfoHash.commonBits(z, dht.InfoHash()) == 0
    assert dht.InfoHash.commonBits(z, z) == 160
    with pytest.raises(IndexError):
        z.getBit(160)


def test_infohash_bad_input():
    with pytest.raises(ValueError, match="40 hex"):
        dht.InfoHash(b"abc")
    with pytest.raises(ValueError, match="non-hex"):
        dht.InfoHash(b"zz" * 20)
    with pytest.raises(TypeError):
        dht.InfoHash(12)
    with pytest.raises(TypeError):
        dht.InfoHash.get(12)
    with pytest.raises(ValueError):
        dht.InfoHash.fromBytes(b"short")
    assert (dht.InfoHash.get("a") == "a") is False


def test_pkid():
    p = dht.PkId.get("x")
    assert len(str(p)) == 64 and len(bytes(p)) == 32
    assert dht.PkId(str(p).encode()) == p and p.getLongId() == p
    assert not dht.PkId()
    with pytest.raises(ValueError):
        dht.PkId(b"00" * 20)


def test_value_fields():
    v = dht.Value(b"hello")
    assert v.data == b"hello" and v.id == 0 and v.value_type == 0
    assert v.size == 5 and len(v) == 5
    assert v.owner is None  # unsigned: None (2.4.12 segfaults here)
    assert v.signature == b"" and not v.is_signed and not v.is_encrypted
    assert not v.recipient
    v.user_type = "text/plain"
    v.id = 42
    v.seq = 3
    v.data = b"hi"
    assert (v.user_type, v.id, v.seq, v.data) == ("text/plain", 42, 3, b"hi")
    assert str(v) == 'Value[id:2a data(text/plain):"hi"]'
    assert v.size == 2 + len("text/plain")
    t = dht.Value(b"x", 3)  # the second argument is the value type, as upstream
    assert t.value_type == 3 and t.id == 0
    h = dht.InfoHash.get("r")
    v.recipient = h
    assert v.recipient == h
    assert dht.Value(bytearray(b"ab")).data == b"ab"
    with pytest.raises(TypeError):
        dht.Value("text")
    with pytest.raises(TypeError):
        v.data = 5
    with pytest.raises(OverflowError):
        dht.Value(b"x", 70000)


def test_value_type():
    t = dht.ValueType(10, "test", datetime.timedelta(minutes=5))
    assert (t.id, t.name, t.expiration) == (10, "test", datetime.timedelta(minutes=5))
    with pytest.raises(TypeError):
        dht.ValueType(10, "test", 300)


def test_query_select_where():
    w = dht.Where().id(3).userType("a").seq(2)
    assert str(w) == 'WHERE id=3,user_type="a",seq=2'
    assert dht.Where("id=3").isSatisfiedBy(dht.Where("WHERE id=3"))
    assert dht.Where('WHERE id=3,user_type="a",seq=2').isSatisfiedBy(dht.Where("id=3"))
    s = dht.Select().field(1).field(4)
    assert str(s) == "SELECT id,seq"
    assert str(dht.Select("SELECT id")) == "SELECT id"
    q = dht.Query("SELECT id WHERE user_type=text")
    assert str(q) == 'Query[SELECT id WHERE user_type="text"]'
    q2 = dht.Query().buildFrom(dht.Select("id"), dht.Where("user_type=text"))
    assert q2.isSatisfiedBy(q) and q.isSatisfiedBy(q2)
    v = dht.Value(b"x")
    v.id = 3
    assert dht.Where().id(3).matches(v) and not dht.Where().id(4).matches(v)
    owner = dht.InfoHash.get("o")
    assert str(dht.Where().owner(owner)) == f"WHERE owner_pk={owner}"
    assert str(dht.Where().valueType(7)) == "WHERE value_type=7"
    with pytest.raises(ValueError):
        dht.Query("WHERE nope=1")
    with pytest.raises(ValueError):
        dht.Select().field(99)
    with pytest.raises(ValueError):
        dht.Where("id=notanumber")


def test_sockaddr():
    a = dht.SockAddr("127.0.0.1", 4222)
    assert str(a) == "127.0.0.1:4222" and a.toString() == b"127.0.0.1:4222"
    assert a.getPort() == 4222 and a.getFamily() == 2 and a.isLoopback() and a.isPrivate()
    b = dht.SockAddr("::1", 5)
    assert b.getFamily() == 10 and str(b) == "[::1]:5"
    e = dht.SockAddr()
    assert not e and str(e) == "[invalid address]" and e.getFamily() == 0
    e.setFamily(2)
    e.setPort(7)
    assert str(e) == "0.0.0.0:7" and e.isUnspecified()
    res = dht.SockAddr.resolve("localhost", "4222")
    assert res and all(r.getPort() == 4222 and r.isLoopback() for r in res)
    with pytest.raises(ValueError):
        dht.SockAddr("not an address")
    with pytest.raises(OSError):
        dht.SockAddr.resolve("no-such-host.invalid")


def test_node_records():
    h = dht.InfoHash.get("n")
    e = dht.NodeEntry(h, dht.SockAddr("127.0.0.1", 1))
    assert e.getId() == h and e.getNode().getId() == h and e.getNode().getAddr() == b"127.0.0.1:1"
    s = dht.NodeSet()
    assert s.insert(e) and not s.insert(e) and s.size() == 1
    s.extend([dht.NodeEntry(dht.InfoHash.get("m"))])
    assert len(s) == 2 and s.first() < s.last()
    assert [x.getId() for x in s] == sorted([h, dht.InfoHash.get("m")])
    assert dht.NodeSetInfo is dht.NodeSet
    with pytest.raises(IndexError):
        dht.NodeSet().first()


def test_identity_keys(tmp_path):
    ident = dht.Identity.generate()
    assert ident and ident.certificate and ident.certificate.getName() == "pydht"
    assert ident.certificate.getId() == ident.publickey.getId() and ident.certificate.isCA()
    assert dht.Identity.load.__doc__
    pk = ident.publickey
    assert pk and pk == ident.key.getPublicKey()
    assert len(str(pk)) == 64 and pk.getLongId() == dht.PkId(str(pk).encode())
    assert pk.getId() == ident.key.getId()
    sig = ident.key.sign(b"msg")
    assert len(sig) == 64 and pk.checkSignature(b"msg", sig) and not pk.checkSignature(b"msh", sig)
    box = pk.encrypt(b"secret")
    assert ident.key.decrypt(box) == b"secret"
    with pytest.raises(ValueError):
        dht.PrivateKey.generate().decrypt(box)
    path = tmp_path / "id"
    ident.save(str(path))
    assert os.stat(path).st_mode & 0o777 == 0o600
    back = dht.Identity.load(str(path))
    assert back.publickey == pk
    (tmp_path / "bad").write_text("nope")
    with pytest.raises(ValueError):
        dht.Identity.load(str(tmp_path / "bad"))
    with pytest.raises(OSError):
        dht.Identity.load(str(tmp_path / "missing"))
    empty = dht.Identity()
    assert not empty and empty.key is None and empty.publickey is None
    assert dht.PublicKey(bytes(pk)) == pk
    assert not dht.PublicKey()
    with pytest.raises(ValueError):
        dht.PublicKey().getId()
    with pytest.raises(ValueError):
        dht.PublicKey(b"bad key")
    assert dht.PrivateKey.generateEC().getPublicKey()


def test_version_and_names():
    assert dht.__version__ == dht.version()
    for name in ["InfoHash", "PkId", "Value", "ValueType", "Query", "Select", "Where", "DhtConfig",
                 "DhtRunner", "Identity", "PrivateKey", "PublicKey", "SockAddr", "Node", "NodeEntry",
                 "NodeSet", "NodeSetInfo", "ListenToken", "Certificate", "TrustList",
                 "VerifyResult", "aesEncrypt", "aesDecrypt"]:
        assert name in dht.__all__, name
        assert getattr(dht, name).__doc__, name


def test_every_public_name_has_a_docstring():
    import inspect

    from rdht import aio

    missing = []
    for mod in (dht, aio):
        for n in mod.__all__:
            o = getattr(mod, n)
            if not (o.__doc__ or "").strip():
                missing.append(n)
            if inspect.isclass(o):
                for m, v in vars(o).items():
                    if not m.startswith("_") and not (getattr(v, "__doc__", None) or "").strip():
                        missing.append(f"{n}.{m}")
    assert missing == []


def test_certificate_ed25519():
    key = dht.PrivateKey.generate()
    c = dht.Certificate.generate(key, "alice")
    assert c and c.getName() == "alice" and c.issuer is None and not c.isCA()
    assert c.getId() == key.getId() and c.getLongId() == key.getLongId()
    assert c.getPublicKey() == key.getPublicKey()
    text = c.toString()
    assert isinstance(text, str) and text.startswith("-----BEGIN RDHT ED25519 CERTIFICATE-----")
    assert bytes(c) == text.encode()
    for form in (text, bytes(c)):
        assert dht.Certificate(form) == c
    assert str(c) == str(key.getPublicKey()) and repr(c).startswith("<Certificate '")
    empty = dht.Certificate()
    assert not empty and empty.toString() == "" and empty.getName() == ""
    with pytest.raises(ValueError):
        empty.getId()
    # a tampered certificate, garbage and X.509 PEM are refused
    tampered = bytearray(bytes(c))
    tampered[70] = ord("0") if tampered[70] != ord("0") else ord("1")
    for bad in (bytes(tampered), b"garbage", b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"):
        with pytest.raises(ValueError):
            dht.Certificate(bad)
    with pytest.raises(TypeError):
        dht.Certificate(42)
    # an identity signed by a CA identity carries the CA's certificate as issuer
    ca = dht.Identity.generate("ca")
    leaf = dht.Identity.generate("leaf", ca)
    assert leaf.certificate.issuer == ca.certificate and not leaf.certificate.isCA()
    assert dht.Certificate(bytes(leaf.certificate)).issuer.getName() == "ca"
    assert dht.Identity(key, c).certificate == c
    with pytest.raises(ValueError):
        dht.Identity(dht.PrivateKey.generate(), c)


def test_trust_list_and_verify_result():
    ca = dht.Identity.generate("ca")
    other_ca = dht.Identity.generate("other ca")
    leaf = dht.Identity.generate("leaf", ca)
    deep = dht.Identity.generate("deep", dht.Identity(leaf.key, leaf.certificate))
    stranger = dht.Identity.generate("stranger", other_ca)
    trust = dht.TrustList()
    r = trust.verify(leaf.certificate)
    assert not r and not r.isValid() and not r.hasError() and "not issued by a trusted" in str(r)
    trust.add(ca.certificate)
    assert len(trust) == 1
    r = trust.verify(leaf.certificate)
    assert r and r.isValid() and not r.hasError() and str(r) == "valid"
    assert trust.verify(ca.certificate).isValid()
    assert not trust.verify(stranger.certificate).isValid()
    # leaf is not a CA: what it signs is not trusted through it
    assert "not a CA" in str(trust.verify(deep.certificate))
    # the CA revokes leaf
    with pytest.raises(ValueError):
        ca.certificate.revoke(leaf.key, leaf.certificate)  # not the CA's key
    cert = dht.Certificate(bytes(ca.certificate))
    trust2 = dht.TrustList()
    trust2.add(cert)
    cert.revoke(ca.key, leaf.certificate)
    r = trust2.verify(leaf.certificate)
    assert not r and not r.hasError() and "revoked" in str(r)
    trust.remove(ca.certificate)
    assert len(trust) == 0 and not trust.verify(leaf.certificate)
    r = trust.verify(dht.Certificate())
    assert not r and r.hasError() and str(r) == "empty certificate"
    assert "invalid" in repr(r)
    with pytest.raises(TypeError):
        trust.verify(b"x")


def test_aes_encrypt_decrypt():
    box = dht.aesEncrypt(b"secret data", "hunter2")
    assert isinstance(box, bytes) and b"secret" not in box
    assert len(box) == 1 + 16 + 12 + len(b"secret data") + 16
    assert dht.aesDecrypt(box, "hunter2") == b"secret data"
    assert dht.aesDecrypt(box, b"hunter2") == b"secret data"  # bytes passwords too
    assert dht.aesEncrypt(b"x", "p") != dht.aesEncrypt(b"x", "p")  # fresh salt and nonce
    with pytest.raises(ValueError, match="wrong password"):
        dht.aesDecrypt(box, "hunter3")
    altered = bytearray(box)
    altered[-1] ^= 1
    with pytest.raises(ValueError, match="wrong password"):
        dht.aesDecrypt(bytes(altered), "hunter2")
    for bad in (b"", b"\x02" + box[1:], box[:20]):
        with pytest.raises(ValueError):
            dht.aesDecrypt(bad, "hunter2")
    with pytest.raises(TypeError):
        dht.aesEncrypt("text", "p")
    assert dht.aesDecrypt(dht.aesEncrypt(b"", "p"), "p") == b""
