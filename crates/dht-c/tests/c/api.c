/* Every function that needs no network, the ownership rules, bad input, and a runner that is
 * not running. Prints "api ok N checks" and exits 0. */
#include "common.h"
#include <stddef.h>

_Static_assert(sizeof(dht_infohash) == 20, "infohash");
_Static_assert(sizeof(dht_pkid) == 32, "pkid");
_Static_assert(sizeof(dht_node_config) == 40, "node config");
_Static_assert(sizeof(dht_secure_config) == 56, "secure config");
_Static_assert(offsetof(dht_runner_config, threaded) == 56, "threaded");
_Static_assert(offsetof(dht_runner_config, proxy_user_agent) == 104, "proxy_user_agent");
_Static_assert(offsetof(dht_runner_config, peer_discovery) == 112, "peer_discovery");
_Static_assert(offsetof(dht_runner_config, server_ca) == 120, "server_ca");
_Static_assert(offsetof(dht_runner_config, log) == 144, "log");
_Static_assert(sizeof(dht_runner_config) == 152, "runner config");

static const char CERT[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBPjCB8aADAgECAhQ5V6Jnw7W+QrAQ6XMXEFh4U7vpwjAFBgMrZXAwFDESMBAG\n"
    "A1UEAwwJcmRodC10ZXN0MCAXDTI2MTIwMTA0MjU1NVoYDzIxMjYxMTA3MDQyNTU1\n"
    "WjAUMRIwEAYDVQQDDAlyZGh0LXRlc3QwKjAFBgMrZXADIQA89O2krfFyTpNuPJrB\n"
    "0lUAQNjcAPr/msJRm4IvByAykaNTMFEwHQYDVR0OBBYEFHucKoFSaWNKDjOIBTCS\n"
    "xxrY+/ZVMB8GA1UdIwQYMBaAFHucKoFSaWNKDjOIBTCSxxrY+/ZVMA8GA1UdEwEB\n"
    "/wQFMAMBAf8wBQYDK2VwA0EACIeuzf7zQaba1e2Os44JRjDZMw95G4+QpktmZ5iC\n"
    "jzGx9KuV7Yl6IWFrPs3s7DQDbnjRx2X65GRP2j+zG96+BA==\n"
    "-----END CERTIFICATE-----\n";
static const char PUBKEY[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MCowBQYDK2VwAyEAPPTtpK3xck6TbjyawdJVAEDY3AD6/5rCUZuCLwcgMpE=\n"
    "-----END PUBLIC KEY-----\n";
static const char PRIVKEY[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIFxeR7ntTsQKuJRR5cLFua8qzkeoMuwlITL4YZEVveUj\n"
    "-----END PRIVATE KEY-----\n";
static const char RSA_PUBKEY[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDDJgfHKinicRm16Ift2IoRcLjP\n"
    "T0GVXqYgHz3Wr1GSgKNNiFqOYHdkHb/x1O/j+i6YNe9QDFjN8BvKCAbo61IpWQ6d\n"
    "-----END PUBLIC KEY-----\n";
/* openssl pkeyutl -sign -rawin -inkey <PRIVKEY> over "hello" */
static const unsigned char SIG[64] = {
    0xd8, 0x94, 0x05, 0x5c, 0x7e, 0x6e, 0xb3, 0x01, 0xbe, 0xfd, 0x2f, 0x37, 0x41, 0x4d, 0x54, 0xce,
    0x08, 0x79, 0x84, 0x98, 0x49, 0x89, 0x36, 0x89, 0x00, 0x73, 0xf1, 0xbd, 0xc8, 0xec, 0x8d, 0xcf,
    0xa4, 0x3d, 0xe3, 0xb7, 0x9e, 0x3e, 0x3b, 0x00, 0x37, 0x99, 0x3d, 0xee, 0xe1, 0x91, 0xfa, 0x1e,
    0x92, 0x2a, 0x58, 0x66, 0x04, 0x23, 0x5c, 0xcd, 0xeb, 0x89, 0x4c, 0xd3, 0xfd, 0xf9, 0x52, 0x0d};

static int eq_hash(dht_infohash a, dht_infohash b) { return memcmp(a.d, b.d, sizeof a.d) == 0; }
static int eq_pkid(dht_pkid a, dht_pkid b) { return memcmp(a.d, b.d, sizeof a.d) == 0; }

static void infohashes(void) {
    dht_infohash h, g;
    dht_infohash_get_from_string(&h, "hello");
    CHECK(strcmp(dht_infohash_print(&h), "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d") == 0);
    dht_infohash_get(&g, (const uint8_t*)"hello", 5);
    CHECK(eq_hash(h, g));
    CHECK(!dht_infohash_is_zero(&h));
    dht_infohash_from_hex(&g, "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d");
    CHECK(eq_hash(h, g));
    dht_infohash_from_hex_null(&g, "AAF4C61DDCC5E8A2DABEDE0F3B482CD9AEA9434Dtrailing");
    CHECK(eq_hash(h, g));
    /* Bad hex, short strings (no over-read), NULL: zero. */
    dht_infohash_from_hex(&g, "zzf4c61ddcc5e8a2dabede0f3b482cd9aea9434d");
    CHECK(dht_infohash_is_zero(&g));
    dht_infohash_from_hex(&g, "aaf4");
    CHECK(dht_infohash_is_zero(&g));
    dht_infohash_from_hex_null(&g, "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434");
    CHECK(dht_infohash_is_zero(&g));
    dht_infohash_from_hex(&g, NULL);
    CHECK(dht_infohash_is_zero(&g));
    dht_infohash_from_hex_null(&g, NULL);
    CHECK(dht_infohash_is_zero(&g));
    dht_infohash_get_from_string(&g, NULL);
    CHECK(dht_infohash_is_zero(&g));
    dht_infohash_get(&g, NULL, 5);
    CHECK(dht_infohash_is_zero(&g));
    dht_infohash_get(&g, NULL, 0); /* SHA-1 of nothing */
    CHECK(strcmp(dht_infohash_print(&g), "da39a3ee5e6b4b0d3255bfef95601890afd80709") == 0);
    dht_infohash_random(&g);
    CHECK(!dht_infohash_is_zero(&g) && !eq_hash(g, h));
    dht_infohash_zero(&g);
    CHECK(dht_infohash_is_zero(&g));
    CHECK(dht_infohash_is_zero(NULL));
    /* The print buffer is per thread and reused. */
    const char* p1 = dht_infohash_print(&h);
    const char* p2 = dht_infohash_print(&g);
    CHECK(p1 == p2 && strcmp(p2, "0000000000000000000000000000000000000000") == 0);
    CHECK(strlen(dht_infohash_print(NULL)) == 40);
    dht_infohash_zero(NULL);
    dht_infohash_random(NULL);
    dht_infohash_get(NULL, (const uint8_t*)"x", 1);
    dht_pkid k;
    memset(k.d, 0xab, sizeof k.d);
    CHECK(strlen(dht_pkid_print(&k)) == 64 && strncmp(dht_pkid_print(&k), "abab", 4) == 0);
    CHECK(dht_pkid_print(&k) != dht_infohash_print(&h));
    CHECK(strlen(dht_pkid_print(NULL)) == 64);
}

static void values(void) {
    dht_value* v = dht_value_new((const uint8_t*)"abc", 3);
    CHECK(v && dht_value_get_id(v) == 0);
    dht_data_view d = dht_value_get_data(v);
    CHECK(d.size == 3 && memcmp(d.data, "abc", 3) == 0);
    CHECK(strcmp(dht_value_get_user_type(v), "") == 0);
    dht_value_set_user_type(v, "application/x");
    CHECK(strcmp(dht_value_get_user_type(v), "application/x") == 0);
    dht_value_set_user_type(v, NULL);
    CHECK(strcmp(dht_value_get_user_type(v), "") == 0);
    CHECK(dht_value_get_owner(v) == NULL);
    dht_infohash r = dht_value_get_recipient(v);
    CHECK(dht_infohash_is_zero(&r));
    /* References: two handles, one value; each unref'd once; a third unref is ignored. */
    dht_value* w = dht_value_ref(v);
    CHECK(w && dht_value_get_data(w).data == d.data);
    dht_value_unref(v);
    CHECK(dht_value_get_data(w).size == 3);
    dht_value_unref(w);
    dht_value_unref(w);
    dht_value_unref(NULL);
    CHECK(dht_value_ref(NULL) == NULL);
    CHECK(dht_value_get_data(NULL).size == 0 && dht_value_get_id(NULL) == 0);
    CHECK(dht_value_get_user_type(NULL) == NULL && dht_value_get_owner(NULL) == NULL);
    dht_value_set_user_type(NULL, "x");

    dht_value* s = dht_value_new_from_string("text");
    CHECK(s && strcmp(dht_value_get_user_type(s), "text/plain") == 0 && dht_value_get_data(s).size == 4);
    dht_value_unref(s);
    CHECK(dht_value_new_from_string(NULL) == NULL);
    dht_value* i = dht_value_with_id_new((const uint8_t*)"x", 1, 42);
    CHECK(i && dht_value_get_id(i) == 42);
    dht_value_unref(i);
    /* Zero-length data is a value; NULL data with a size is not. */
    dht_value* z = dht_value_new(NULL, 0);
    CHECK(z && dht_value_get_data(z).size == 0 && dht_value_get_data(z).data != NULL);
    dht_value_unref(z);
    CHECK(dht_value_new(NULL, 10) == NULL);
    /* Oversize values are created (their put fails: runner.c). */
    static uint8_t big[100 * 1024];
    dht_value* b = dht_value_new(big, sizeof big);
    CHECK(b && dht_value_get_data(b).size == sizeof big);
    dht_value_unref(b);
}

static void crypto(void) {
    dht_publickey* pk = dht_publickey_import((const uint8_t*)PUBKEY, strlen(PUBKEY));
    CHECK(pk);
    char der[64];
    size_t n = 10;
    CHECK(dht_publickey_export(pk, der, &n) == -51 && n == 44);
    n = 0;
    CHECK(dht_publickey_export(pk, NULL, &n) == -51 && n == 44);
    n = sizeof der;
    CHECK(dht_publickey_export(pk, der, &n) == 0 && n == 44);
    CHECK(dht_publickey_export(pk, der, NULL) == -50);
    CHECK(dht_publickey_export(NULL, der, &n) == -50);
    dht_publickey* pk2 = dht_publickey_import((const uint8_t*)der, n);
    CHECK(pk2);
    dht_infohash id = dht_publickey_get_id(pk), id2 = dht_publickey_get_id(pk2), sha;
    dht_infohash_get(&sha, (const uint8_t*)der, n);
    CHECK(eq_hash(id, id2) && eq_hash(id, sha));
    dht_pkid lid = dht_publickey_get_long_id(pk);
    CHECK(eq_pkid(lid, dht_publickey_get_long_id(pk2)));
    CHECK(dht_publickey_check_signature(pk, "hello", 5, (const char*)SIG, 64));
    CHECK(!dht_publickey_check_signature(pk, "hellO", 5, (const char*)SIG, 64));
    CHECK(!dht_publickey_check_signature(pk, "hello", 5, (const char*)SIG, 63));
    CHECK(!dht_publickey_check_signature(NULL, "hello", 5, (const char*)SIG, 64));
    CHECK(!dht_publickey_check_signature(pk, NULL, 5, (const char*)SIG, 64));
    CHECK(dht_publickey_import((const uint8_t*)RSA_PUBKEY, strlen(RSA_PUBKEY)) == NULL);
    CHECK(dht_publickey_import((const uint8_t*)"junk", 4) == NULL);
    CHECK(dht_publickey_import(NULL, 4) == NULL);
    CHECK(dht_publickey_import(NULL, 0) == NULL);
    dht_publickey_delete(pk2);
    dht_publickey_delete(pk2);

    /* The private key of PUBKEY: same ids; export/import round trip. */
    dht_privatekey* sk = dht_privatekey_import((const uint8_t*)PRIVKEY, strlen(PRIVKEY), NULL);
    CHECK(sk);
    dht_publickey* skp = dht_privatekey_get_publickey(sk);
    CHECK(eq_hash(dht_publickey_get_id(skp), id));
    char pem[256];
    size_t pn = sizeof pem;
    CHECK(dht_privatekey_export(sk, pem, &pn, NULL) == 0 && pn == strlen(PRIVKEY) && strcmp(pem, PRIVKEY) == 0);
    pn = 8;
    CHECK(dht_privatekey_export(sk, pem, &pn, "") == -51 && pn == strlen(PRIVKEY));
    pn = sizeof pem;
    CHECK(dht_privatekey_export(sk, pem, &pn, "secret") == -1);
    pn = 0;
    CHECK(dht_privatekey_export(sk, pem, &pn, NULL) == -1);
    CHECK(dht_privatekey_export(sk, NULL, &pn, NULL) == -1);
    CHECK(dht_privatekey_export(NULL, pem, &pn, NULL) == -1);
    CHECK(dht_privatekey_import((const uint8_t*)PRIVKEY, strlen(PRIVKEY), "secret") == NULL);
    CHECK(dht_privatekey_import((const uint8_t*)"junk", 4, "") == NULL);

    /* Sealed boxes. */
    dht_blob* box = dht_publickey_encrypt(pk, "secret", 6);
    CHECK(box && dht_blob_get_data(box).size == 6 + 49);
    dht_data_view bv = dht_blob_get_data(box);
    dht_blob* plain = dht_privatekey_decrypt(sk, (const char*)bv.data, bv.size);
    CHECK(plain && dht_blob_get_data(plain).size == 6 && memcmp(dht_blob_get_data(plain).data, "secret", 6) == 0);
    dht_privatekey* other = dht_privatekey_generate(4096);
    CHECK(other && dht_privatekey_decrypt(other, (const char*)bv.data, bv.size) == NULL);
    CHECK(dht_privatekey_decrypt(sk, "short", 5) == NULL);
    CHECK(dht_publickey_encrypt(NULL, "x", 1) == NULL);
    dht_blob* empty = dht_publickey_encrypt(pk, NULL, 0);
    CHECK(empty && dht_blob_get_data(empty).size == 49);
    dht_blob_delete(empty);
    dht_blob_delete(plain);
    dht_blob_delete(box);
    dht_blob_delete(box);
    dht_blob_delete(NULL);
    CHECK(dht_blob_get_data(NULL).size == 0);
    dht_privatekey_delete(other);
    dht_publickey_delete(skp);

    /* Certificates: an X.509 Ed25519 certificate's key is PUBKEY. */
    dht_certificate* c = dht_certificate_import((const uint8_t*)CERT, strlen(CERT));
    CHECK(c);
    CHECK(eq_hash(dht_certificate_get_id(c), id) && eq_pkid(dht_certificate_get_long_id(c), lid));
    dht_publickey* cp = dht_certificate_get_publickey(c);
    CHECK(cp && eq_hash(dht_publickey_get_id(cp), id));
    dht_publickey_delete(cp);
    dht_certificate_delete(c);
    dht_certificate_delete(c);
    CHECK(dht_certificate_import((const uint8_t*)RSA_PUBKEY, strlen(RSA_PUBKEY)) == NULL);
    CHECK(dht_certificate_import(NULL, 0) == NULL);
    CHECK(dht_certificate_get_publickey(NULL) == NULL);
    dht_infohash zid = dht_certificate_get_id(NULL);
    CHECK(dht_infohash_is_zero(&zid));

    /* Identities: the certificate's key is the private key's public half. */
    dht_identity ident = dht_identity_generate("node", NULL);
    CHECK(ident.privatekey && ident.certificate);
    dht_publickey* ip = dht_privatekey_get_publickey(ident.privatekey);
    CHECK(eq_hash(dht_publickey_get_id(ip), dht_certificate_get_id(ident.certificate)));
    dht_publickey_delete(ip);
    dht_identity signed_id = dht_identity_generate(NULL, &ident);
    CHECK(signed_id.privatekey && signed_id.certificate);
    dht_identity_delete(&signed_id);
    CHECK(signed_id.privatekey == NULL && signed_id.certificate == NULL);
    dht_identity_delete(&signed_id);
    dht_identity_delete(&ident);
    dht_identity_delete(NULL);

    dht_privatekey_delete(sk);
    dht_privatekey_delete(sk);
    dht_publickey_delete(pk);
    dht_publickey_delete(NULL);
}

static int done_calls, done_ok, end_calls;
static pthread_t caller;
static void on_done(bool ok, void* ud) {
    CHECK(ud == &done_calls && pthread_equal(pthread_self(), caller));
    done_calls++;
    done_ok += ok;
}
static void on_end(void* ud) {
    CHECK(ud == &end_calls && pthread_equal(pthread_self(), caller));
    end_calls++;
}
static bool never_get(const dht_value* v, void* ud) { (void)v; (void)ud; CHECK(0); return true; }
static bool never_listen(const dht_value* v, bool e, void* ud) { (void)v; (void)e; (void)ud; CHECK(0); return true; }

/* A runner that is not running: every operation ends at once, on this thread. */
static void idle_runner(void) {
    caller = pthread_self();
    dht_runner* r = dht_runner_new();
    CHECK(r && !dht_runner_is_running(r));
    dht_infohash h;
    dht_infohash_get_from_string(&h, "key");
    dht_value* v = dht_value_new_from_string("v");
    dht_runner_get(r, &h, never_get, on_done, &done_calls);
    CHECK(done_calls == 1 && done_ok == 0);
    dht_runner_put(r, &h, v, on_done, &done_calls, false);
    dht_runner_put_signed(r, &h, v, on_done, &done_calls, true);
    dht_pkid to;
    memset(to.d, 1, sizeof to.d);
    dht_runner_put_encrypted(r, &h, &to, v, on_done, &done_calls, false);
    CHECK(done_calls == 4 && done_ok == 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    dht_runner_ping(r, (struct sockaddr*)&sin, sizeof sin, on_done, &done_calls);
    CHECK(done_calls == 5 && done_ok == 0);
    dht_runner_get(r, &h, never_get, NULL, NULL);
    dht_runner_put(r, &h, v, NULL, NULL, false);
    dht_op_token* t = dht_runner_listen(r, &h, never_listen, on_end, &end_calls);
    CHECK(t && end_calls == 1);
    dht_runner_cancel_listen(r, &h, t);
    dht_runner_cancel_listen(r, &h, t);
    CHECK(end_calls == 1);
    dht_op_token_delete(t);
    dht_op_token_delete(t);
    dht_op_token_delete(NULL);
    dht_runner_cancel_listen(r, &h, NULL);
    dht_runner_shutdown(r, on_end, &end_calls);
    CHECK(end_calls == 2);
    dht_runner_shutdown(r, NULL, NULL);
    dht_runner_cancel_put(r, &h, 1);
    dht_infohash id = dht_runner_get_node_id(r);
    CHECK(dht_infohash_is_zero(&id));
    id = dht_runner_get_id(r);
    CHECK(dht_infohash_is_zero(&id));
    CHECK(dht_runner_get_bound_port(r, AF_INET) == 0);
    CHECK(dht_runner_get_public_address(r) == NULL);
    dht_runner_bootstrap(r, "127.0.0.1", "4222");
    dht_runner_bootstrap(r, NULL, NULL);

    /* NULL runner: the same, and nothing else. */
    dht_runner_get(NULL, &h, never_get, on_done, &done_calls);
    dht_runner_put(NULL, &h, v, on_done, &done_calls, false);
    CHECK(done_calls == 7);
    CHECK(!dht_runner_is_running(NULL) && dht_runner_run(NULL, 0) == ENOTCONN);
    CHECK(dht_runner_run_config(NULL, 0, NULL) == ENOTCONN);
    dht_runner_delete(NULL);

    /* Run, then run again: refused while running. A taken port: ENOTCONN. */
    CHECK(dht_runner_run(r, 0) == 0 && dht_runner_is_running(r));
    in_port_t port = dht_runner_get_bound_port(r, AF_INET);
    CHECK(port != 0 && dht_runner_get_bound_port(r, 12345) == 0);
    CHECK(dht_runner_run(r, 0) == ENOTCONN);
    dht_runner* r2 = dht_runner_new();
    CHECK(dht_runner_run(r2, port) == ENOTCONN && !dht_runner_is_running(r2));
    /* Proxy mode is not available. */
    dht_runner_config cfg;
    dht_runner_config_default(&cfg);
    CHECK(cfg.threaded && !cfg.log && cfg.proxy_server == NULL && cfg.dht_config.node_config.network == 0);
    cfg.proxy_server = "127.0.0.1:8080";
    CHECK(dht_runner_run_config(r2, 0, &cfg) == ENOTCONN);
    cfg.proxy_server = NULL;
    CHECK(dht_runner_run_config(r2, 0, &cfg) == 0);
    dht_runner_config_default(NULL);
    dht_runner_delete(r2);
    dht_runner_delete(r2);
    dht_runner_delete(r);
    /* Calls after delete: detected, ignored. */
    CHECK(!dht_runner_is_running(r));
    dht_runner_get(r, &h, never_get, on_done, &done_calls);
    CHECK(done_calls == 8 && done_ok == 0);
    dht_value_unref(v);
}

int main(void) {
    CHECK(strlen(dht_version()) > 0);
    infohashes();
    values();
    crypto();
    idle_runner();
    printf("api ok %d checks\n", checks);
    return 0;
}
