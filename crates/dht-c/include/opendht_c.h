/*
 * opendht_c.h: OpenDHT's C API, implemented by rdht (crate dht-c, library -lopendht-c).
 *
 * Source-compatible with OpenDHT's `opendht_c.h`: the names, signatures and struct layouts are
 * OpenDHT 4.3's (HEAD). Where Debian's OpenDHT 2.4.12 differs, a "[2.4.12]" note says so; a
 * program written with the calls both share builds against either header.
 *
 * This header needs nothing of OpenDHT's: it defines HASH_LEN and OPENDHT_C_PUBLIC itself.
 *
 * ## General rules
 *
 * Ownership. A function that returns a pointer hands it over: free it with the matching
 * *_delete / *_unref. Exceptions: `const char*` returns are borrowed (never free them), and the
 * `dht_value*` given to a callback is valid only during that call (dht_value_ref keeps it).
 * Values are reference-counted: every dht_value_ref makes one more handle, and each handle gets
 * one dht_value_unref. Functions never take ownership of their arguments; dht_runner_put* keep
 * their own copy of the value, so the caller may unref it right after the call.
 *
 * Bad input. Every handle is checked: a NULL, freed or foreign handle is refused with the
 * function's error return (NULL, 0, false, an empty view, a negative code, or nothing for void
 * functions), and a second *_delete / *_unref of the same handle is detected and ignored (until
 * the address is reused by a new handle of the same type). NULL strings and NULL data with a
 * non-zero size are refused the same way. No function aborts the process.
 *
 * Threads. Runner functions may be called from any thread. Other handles are not synchronised:
 * don't free one while another thread uses it. Each running runner has a callback thread: every
 * callback (values, done, listen end, shutdown) runs there, one at a time, in the order the node
 * produced the results. Exceptions, as OpenDHT: an operation on a runner that is not running (or
 * was shut down) calls its done callback with ok = false at once, on the calling thread, inside
 * the call; and callbacks still pending when dht_runner_delete ends the runner (listen ends,
 * done(false) of unfinished operations, shutdown callbacks) run on the deleting thread before it
 * returns. A callback may call every function, including those of its own runner, except that
 * dht_runner_delete of its own runner returns at once and finishes on another thread.
 *
 * Callbacks run exactly once where the text says "once": every done callback is called, with
 * ok = false when the operation could not finish (shutdown, delete, refusal). It is the place to
 * free the operation's user_data (for a listen: its dht_shutdown_cb).
 *
 * Crypto. OpenDHT's keys are RSA with X.509 certificates (GnuTLS); ours are Ed25519 (signatures)
 * and X25519 (encryption). Every crypto function keeps its name and signature; the comments say
 * what each does here. Values signed or encrypted by OpenDHT nodes (RSA) are delivered, but their
 * owner key is not readable (dht_value_get_owner gives NULL).
 *
 * Licence: GPL-3.0-or-later (rdht).
 */

#ifndef OPENDHT_C_H
#define OPENDHT_C_H

#include <sys/socket.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#ifndef OPENDHT_C_PUBLIC
#  if defined(__GNUC__) || defined(__clang__)
#    define OPENDHT_C_PUBLIC __attribute__((visibility("default")))
#  else
#    define OPENDHT_C_PUBLIC
#  endif
#endif

#ifndef HASH_LEN
/* Bytes of an InfoHash (OpenDHT's def.h). */
#  define HASH_LEN 20u
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Non-owning view of bytes, valid while its owner lives unchanged. An empty view has size 0 and a
 * data pointer that is not NULL (so memcpy(dst, v.data, v.size) is valid C). */
struct dht_data_view {
    const uint8_t* data;
    size_t size;
};
typedef struct dht_data_view dht_data_view;

/* "<rdht version> (rdht, OpenDHT C API 4.3)": static, not to be freed. (OpenDHT returns its own
 * version, e.g. "2.4.12".) */
OPENDHT_C_PUBLIC const char* dht_version(void);

/* ---- dht::Blob: bytes owned by the caller -------------------------------------------------- */
struct dht_blob;
typedef struct dht_blob dht_blob;
/* A view into the blob (empty for NULL). */
OPENDHT_C_PUBLIC dht_data_view dht_blob_get_data(const dht_blob* data);
OPENDHT_C_PUBLIC void dht_blob_delete(dht_blob* data);

/* ---- dht::InfoHash: 20 bytes, by value -------------------------------------------------------
 * Every function ignores a NULL `h`. */
struct dht_infohash { uint8_t d[HASH_LEN]; };
typedef struct dht_infohash dht_infohash;
OPENDHT_C_PUBLIC void dht_infohash_zero(dht_infohash* h);
/* 20 bytes from the OS's random source. */
OPENDHT_C_PUBLIC void dht_infohash_random(dht_infohash* h);
/* Parses 40 hex chars; stops at a NUL (OpenDHT reads 40 chars regardless). Fewer than 40, a
 * non-hex char, or NULL: zero. */
OPENDHT_C_PUBLIC void dht_infohash_from_hex(dht_infohash* h, const char* dat);
/* Parses the first 40 chars of a NUL-terminated string: fewer, non-hex, or NULL gives zero. */
OPENDHT_C_PUBLIC void dht_infohash_from_hex_null(dht_infohash* h, const char* dat);
/* SHA-1 of dat_size bytes (NULL dat with a non-zero size: zero). */
OPENDHT_C_PUBLIC void dht_infohash_get(dht_infohash* h, const uint8_t* dat, size_t dat_size);
/* SHA-1 of strlen(str) bytes (NULL: zero). */
OPENDHT_C_PUBLIC void dht_infohash_get_from_string(dht_infohash* h, const char* str);
/* 40 lowercase hex chars in a thread-local buffer that the next call on the same thread
 * overwrites: printf("%s %s", print(a), print(b)) prints one of them twice. NULL prints zero. */
OPENDHT_C_PUBLIC const char* dht_infohash_print(const dht_infohash* h);
/* True when all bytes are zero (and for NULL). */
OPENDHT_C_PUBLIC bool dht_infohash_is_zero(const dht_infohash* h);

/* ---- dht::PkId: 32 bytes, SHA-256 of a public key (its "long id") --------------------------- */
struct dht_pkid { uint8_t d[32]; };
typedef struct dht_pkid dht_pkid;
/* 64 hex chars, in a thread-local buffer of its own. */
OPENDHT_C_PUBLIC const char* dht_pkid_print(const dht_pkid* h);

/* ---- Public keys: Ed25519 (OpenDHT: RSA) ---------------------------------------------------- */
struct dht_publickey;
typedef struct dht_publickey dht_publickey;
/* Ed25519 SubjectPublicKeyInfo (RFC 8410), PEM ("PUBLIC KEY") or DER. NULL on error, and for
 * RSA keys. */
OPENDHT_C_PUBLIC dht_publickey* dht_publickey_import(const uint8_t* dat, size_t dat_size);
OPENDHT_C_PUBLIC void dht_publickey_delete(dht_publickey* pk);
/* Writes the SubjectPublicKeyInfo DER (44 bytes, binary despite `char*`). *out_size is the
 * capacity in and the length out. Returns 0; -51 (GNUTLS_E_SHORT_MEMORY_BUFFER) when out is
 * NULL or too small, with *out_size set to the size needed; -50 for a NULL key or out_size. */
OPENDHT_C_PUBLIC int dht_publickey_export(const dht_publickey* pk, char* out, size_t* out_size);
/* SHA-1 of the SubjectPublicKeyInfo DER (the short id). Zero for NULL. */
OPENDHT_C_PUBLIC dht_infohash dht_publickey_get_id(const dht_publickey* pk);
/* SHA-256 of the SubjectPublicKeyInfo DER (the long id). Zero for NULL. */
OPENDHT_C_PUBLIC dht_pkid dht_publickey_get_long_id(const dht_publickey* pk);
/* Ed25519 (64-byte signatures; OpenDHT: RSA PKCS#1 v1.5 SHA-512). */
OPENDHT_C_PUBLIC bool dht_publickey_check_signature(const dht_publickey* pk, const char* data, size_t data_size, const char* signature, size_t signature_size);
/* X25519 + ChaCha20-Poly1305 sealed box (data_size + 49 bytes); not readable by OpenDHT. NULL on
 * error. */
OPENDHT_C_PUBLIC dht_blob* dht_publickey_encrypt(const dht_publickey* pk, const char* data, size_t data_size);

/* ---- Private keys: Ed25519 (OpenDHT: RSA) --------------------------------------------------- */
struct dht_privatekey;
typedef struct dht_privatekey dht_privatekey;
/* A new Ed25519 key: key_length_bits (an RSA size) is ignored. */
OPENDHT_C_PUBLIC dht_privatekey* dht_privatekey_generate(unsigned key_length_bits);
/* Unencrypted PKCS#8 (RFC 8410), PEM ("PRIVATE KEY") or DER. password NULL or "": a non-empty
 * password (an encrypted key: no PBES2 here) gives NULL, as does any error. */
OPENDHT_C_PUBLIC dht_privatekey* dht_privatekey_import(const uint8_t* dat, size_t dat_size, const char* password);
/* Writes unencrypted PKCS#8 PEM, NUL-terminated when there is room (the NUL is not counted in
 * *out_size). -1 if out or out_size is NULL, *out_size is 0, the key is NULL, or password is
 * non-empty; -51 with the size needed when too small; 0 on success. NULL password means "". */
OPENDHT_C_PUBLIC int dht_privatekey_export(const dht_privatekey*, char* out, size_t* out_size, const char* password);
/* A new handle on the public half. */
OPENDHT_C_PUBLIC dht_publickey* dht_privatekey_get_publickey(const dht_privatekey*);
/* Opens what dht_publickey_encrypt sealed to this key. NULL on error. */
OPENDHT_C_PUBLIC dht_blob* dht_privatekey_decrypt(const dht_privatekey*, const char* data, size_t data_size);
OPENDHT_C_PUBLIC void dht_privatekey_delete(dht_privatekey*);

/* ---- Certificates (OpenDHT: X.509 via GnuTLS) ------------------------------------------------
 * Ours read only the key: any PEM ("CERTIFICATE") or DER certificate holding an Ed25519
 * SubjectPublicKeyInfo (e.g. `openssl req -x509 -newkey ed25519`); its first such key is the
 * certificate's key. RSA certificates give NULL. */
struct dht_certificate;
typedef struct dht_certificate dht_certificate;
OPENDHT_C_PUBLIC dht_certificate* dht_certificate_import(const uint8_t* dat, size_t dat_size);
OPENDHT_C_PUBLIC dht_infohash dht_certificate_get_id(const dht_certificate*);
OPENDHT_C_PUBLIC dht_pkid dht_certificate_get_long_id(const dht_certificate*);
/* A new handle on the certificate's key. */
OPENDHT_C_PUBLIC dht_publickey* dht_certificate_get_publickey(const dht_certificate*);
OPENDHT_C_PUBLIC void dht_certificate_delete(dht_certificate*);

/* An identity: either field may be NULL. */
struct dht_identity {
    dht_privatekey* privatekey;
    dht_certificate* certificate;
};
typedef struct dht_identity dht_identity;
/* A new Ed25519 key and a certificate for it (OpenDHT: RSA-4096 and X.509 with CN =
 * common_name, signed by ca when complete). common_name and ca may be NULL; ca is not used (our
 * certificates are never exported). Both handles are the caller's (dht_identity_delete). */
OPENDHT_C_PUBLIC dht_identity dht_identity_generate(const char* common_name, const dht_identity* ca);
/* Frees both handles and sets the fields to NULL; the struct itself is the caller's. */
OPENDHT_C_PUBLIC void dht_identity_delete(dht_identity*);

/* ---- dht::Value: reference-counted ---------------------------------------------------------- */
struct dht_value;
typedef struct dht_value dht_value;
typedef uint64_t dht_value_id;
/* A value of `size` bytes copied from `data`: type 0, id 0 (assigned at put), no user type.
 * NULL data with a non-zero size: NULL. Values over 64 KiB are created, but their put fails. */
OPENDHT_C_PUBLIC dht_value* dht_value_new(const uint8_t* data, size_t size);
/* The same with a chosen id (lets dht_runner_cancel_put work without waiting).
 * [2.4.12] absent (added in OpenDHT 3.3.0). */
OPENDHT_C_PUBLIC dht_value* dht_value_with_id_new(const uint8_t* data, size_t size, uint64_t value_id);
/* strlen(str) bytes, user type "text/plain". NULL: NULL. */
OPENDHT_C_PUBLIC dht_value* dht_value_new_from_string(const char* str);
/* A new handle on the same value; unref each handle once. */
OPENDHT_C_PUBLIC dht_value* dht_value_ref(const dht_value*);
/* Releases one handle. Handles given to callbacks are not the caller's: unref of one is ignored. */
OPENDHT_C_PUBLIC void dht_value_unref(dht_value*);
OPENDHT_C_PUBLIC dht_data_view dht_value_get_data(const dht_value* data);
/* The id. After a put of a value with id 0, ours sets the id chosen for it on the caller's value
 * during the dht_runner_put* call (OpenDHT: on the DHT thread, visible in the done callback). */
OPENDHT_C_PUBLIC dht_value_id dht_value_get_id(const dht_value* data);
/* A new handle on the owner's key (free it), or NULL when unsigned or when the owner's key is not
 * Ed25519 (values signed by OpenDHT nodes). */
OPENDHT_C_PUBLIC dht_publickey* dht_value_get_owner(const dht_value* data);
/* The recipient's short id; zero when none. */
OPENDHT_C_PUBLIC dht_infohash dht_value_get_recipient(const dht_value* data);
/* Borrowed: valid while the value lives and its user type is unchanged. */
OPENDHT_C_PUBLIC const char* dht_value_get_user_type(const dht_value* data);
/* Copies the string (NULL: ""). */
OPENDHT_C_PUBLIC void dht_value_set_user_type(dht_value* data, const char* user_type);

/* ---- Callbacks -------------------------------------------------------------------------------
 * dht_get_cb: once per value of a get (values are not repeated within one get unless their
 *   content changed). Return true to keep going; false ends the get, and its done callback then
 *   runs with ok = true.
 * dht_value_cb: once per value of a listen: expired = false for a value that appeared (the
 *   values already stored when the listen starts included), true for one that expired or was
 *   removed. Return false to cancel the listen.
 * dht_done_cb: once at the end of a get, put or ping. ok: for a get, the search reached the
 *   closest nodes (or the get callback stopped it); for a put, the value was stored by the
 *   closest nodes; for a ping, the node answered.
 * dht_shutdown_cb: in dht_runner_shutdown, "shutdown finished"; in dht_runner_listen, "this
 *   listen is over, free user_data now" (after cancel, after the value callback returned false,
 *   at shutdown, or at delete). Once either way.
 * The `value` given to a callback is borrowed: valid during the call only. */
typedef bool (*dht_get_cb)(const dht_value* value, void* user_data);
typedef bool (*dht_value_cb)(const dht_value* value, bool expired, void* user_data);
typedef void (*dht_done_cb)(bool ok, void* user_data);
typedef void (*dht_shutdown_cb)(void* user_data);

/* A listen token, owned by the caller: delete it, also after cancelling (deleting it does not
 * cancel the listen). */
struct dht_op_token;
typedef struct dht_op_token dht_op_token;
OPENDHT_C_PUBLIC void dht_op_token_delete(dht_op_token* token);

/* ---- Configuration -------------------------------------------------------------------------- */
struct dht_node_config {
    dht_infohash node_id;      /* zero: random */
    uint32_t network;          /* network id: other networks are ignored */
    bool is_bootstrap;         /* bootstrap mode (for testing) */
    bool maintain_storage;     /* ours always keeps stored values alive */
    const char* persist_path;  /* NULL; not used by ours */
};
typedef struct dht_node_config dht_node_config;

struct dht_secure_config {
    dht_node_config node_config;
    dht_identity id;           /* the node's identity (signed and encrypted puts); NULL: none */
};
typedef struct dht_secure_config dht_secure_config;

/* The HEAD (4.x) layout: 152 bytes on LP64. [2.4.12] has no proxy_user_agent, so every field
 * after push_platform sits 8 bytes earlier there: a binary built with one header cannot use the
 * other's library. Source that names fields builds against both. */
struct dht_runner_config {
    dht_secure_config dht_config;
    bool threaded;                 /* ours always runs its own thread */
    const char* proxy_server;      /* proxy-client mode is not available: non-empty fails run */
    const char* push_node_id;      /* not used */
    const char* push_token;        /* not used */
    const char* push_topic;        /* not used */
    const char* push_platform;     /* not used */
    const char* proxy_user_agent;  /* not used. [2.4.12] absent */
    bool peer_discovery;           /* LAN discovery: not available, ignored */
    bool peer_publish;             /* ignored */
    dht_certificate* server_ca;    /* proxy TLS: not used. [2.4.12] ignored too */
    dht_identity client_identity;  /* proxy TLS: not used. [2.4.12] ignored too */
    bool log;                      /* ours installs no logger: ignored */
};
typedef struct dht_runner_config dht_runner_config;
/* All zero, then threaded = true. */
OPENDHT_C_PUBLIC void dht_runner_config_default(dht_runner_config* config);

/* ---- dht::DhtRunner --------------------------------------------------------------------------
 * Lifecycle: new -> run -> operations -> shutdown(cb) -> delete (or run again after shutdown). */
struct dht_runner;
typedef struct dht_runner dht_runner;
/* A new runner, not running. */
OPENDHT_C_PUBLIC dht_runner* dht_runner_new(void);
/* Ends the runner without waiting for pending puts, joins its threads and frees it. Pending end
 * callbacks (listen ends, done(false) of gets, puts and pings still in flight, shutdown
 * callbacks) run before it returns, those not yet run on this thread.
 * Called from one of this runner's callbacks, it returns at once and the end is finished on
 * another thread (OpenDHT deadlocks). */
OPENDHT_C_PUBLIC void dht_runner_delete(dht_runner* runner);
/* Runs on `port` (0: any free port), IPv4 and IPv6 on every address, default configuration, no
 * identity. Returns 0, or ENOTCONN on any failure (port taken, already running, NULL runner). A
 * failed runner, or one shut down, can run again. */
OPENDHT_C_PUBLIC int dht_runner_run(dht_runner* runner, in_port_t port);
/* The same with a configuration, copied (NULL: default). */
OPENDHT_C_PUBLIC int dht_runner_run_config(dht_runner* runner, in_port_t port, const dht_runner_config* config);
/* Pings one node (port 0: 4222): done_cb(ok) says whether it answered (within about 3 s). It may
 * then enter the routing table; it is not added to the bootstrap list. done_cb may be NULL. */
OPENDHT_C_PUBLIC void dht_runner_ping(dht_runner* runner, struct sockaddr* addr, socklen_t addr_len, dht_done_cb done_cb, void* cb_user_data);
/* Adds a bootstrap node: host and service (a port number), or with service NULL, host as
 * "host:port", "[v6]:port" or a bare host (port 4222). Names are resolved on the calling thread
 * (OpenDHT: asynchronously). Before run, kept for run. No result is reported. */
OPENDHT_C_PUBLIC void dht_runner_bootstrap(dht_runner* runner, const char* host, const char* service);
/* Gets the values at hash: cb per value (NULL: accept all; OpenDHT requires it), done_cb(ok)
 * once (may be NULL). NULL or zero hash: done_cb(false). */
OPENDHT_C_PUBLIC void dht_runner_get(dht_runner* runner, const dht_infohash* hash, dht_get_cb cb, dht_done_cb done_cb, void* cb_user_data);
/* Listens at hash (see dht_value_cb; cb NULL: accept all). done_cb (may be NULL) runs once when
 * the listen is over. Returns a token, owned by the caller, also when not running (the listen is
 * then already over: done_cb has run on this thread). */
OPENDHT_C_PUBLIC dht_op_token* dht_runner_listen(dht_runner* runner, const dht_infohash* hash, dht_value_cb cb, dht_shutdown_cb done_cb, void* cb_user_data);
/* Cancels the token's listen, asynchronously: no value callback starts after this call returns
 * (one already running on the callback thread finishes); the listen's done_cb runs on the
 * callback thread once the node has dropped it. A token cancels once; runner and hash may be
 * NULL (the token names its listen). The token must still be deleted (after this call, or in
 * the listen's done_cb). */
OPENDHT_C_PUBLIC void dht_runner_cancel_listen(dht_runner* runner, const dht_infohash* hash, dht_op_token* token);
/* Puts value at hash (the runner keeps its own copy). permanent: re-announce until cancel_put.
 * done_cb may be NULL. NULL hash or value, or data over 64 KiB: done_cb(false). */
OPENDHT_C_PUBLIC void dht_runner_put(dht_runner* runner, const dht_infohash* hash, const dht_value* value, dht_done_cb done_cb, void* cb_user_data, bool permanent);
/* The same, signed with the runner's identity (Ed25519). No identity: done_cb(false). */
OPENDHT_C_PUBLIC void dht_runner_put_signed(dht_runner* runner, const dht_infohash* hash, const dht_value* value, dht_done_cb done_cb, void* cb_user_data, bool permanent);
/* The same, encrypted to the key whose long id is `to` (X25519) and signed inside. Ours needs the
 * key itself: it must be one this process has seen (imported, generated, from a certificate or
 * a value's owner); otherwise, or without an identity: done_cb(false).
 * [2.4.12] `to` is a `const dht_infohash*` (the short id). */
OPENDHT_C_PUBLIC void dht_runner_put_encrypted(dht_runner* runner, const dht_infohash* hash, const dht_pkid* to, const dht_value* value, dht_done_cb done_cb, void* cb_user_data, bool permanent);
/* Stops re-announcing a permanent put. */
OPENDHT_C_PUBLIC void dht_runner_cancel_put(dht_runner* runner, const dht_infohash* hash, dht_value_id value_id);
/* Graceful shutdown: pending puts finish (at most 30 s), then done_cb runs on the callback
 * thread. The runner stays allocated and dht_runner_is_running stays true; operations fail at
 * once from now on. Not running, or already shut down: done_cb runs at once on this thread. */
OPENDHT_C_PUBLIC void dht_runner_shutdown(dht_runner* runner, dht_shutdown_cb done_cb, void* cb_user_data);
/* The node id (zero when not running). */
OPENDHT_C_PUBLIC dht_infohash dht_runner_get_node_id(const dht_runner* runner);
/* The short id of the identity's public key; zero without an identity. */
OPENDHT_C_PUBLIC dht_infohash dht_runner_get_id(const dht_runner* runner);
/* True from run until delete, also after shutdown (as OpenDHT). NULL: false. */
OPENDHT_C_PUBLIC bool dht_runner_is_running(const dht_runner* runner);
/* The port bound for AF_INET or AF_INET6, in host byte order; 0 if that family is not bound. */
OPENDHT_C_PUBLIC in_port_t dht_runner_get_bound_port(const dht_runner* runner, sa_family_t af);
/* Our public addresses as peers report them (with our bound port): a NULL-terminated malloc'ed
 * array; free() each element, then the array. NULL when none, before run, or after shutdown. */
OPENDHT_C_PUBLIC struct sockaddr** dht_runner_get_public_address(const dht_runner* runner);

/* No dht_runner_put_permanent: it existed only in OpenDHT 2.0.0beta1. */

#ifdef __cplusplus
}
#endif

#endif /* OPENDHT_C_H */
