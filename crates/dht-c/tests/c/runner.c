/* Runners on loopback in one process: run, bootstrap, ping, put (plain, signed, encrypted,
 * permanent), get, listen, cancel, the callbacks' bool returns, their threads, ownership of
 * callback values, shutdown, run again, delete with listens active and from a callback.
 * Prints "runner ok N checks" and exits 0. */
#include "common.h"
#include <arpa/inet.h>
#include <unistd.h>

#define LIMIT 30

static pthread_t main_thread;

struct op {
    int done;          /* done callbacks */
    int ok;            /* of which ok */
    int values;        /* value callbacks */
    int stop_after;    /* get/listen: return false after this many values (0: never) */
    int ended;         /* listen end callbacks */
    int on_main;       /* callbacks run on the main thread */
    dht_value* kept;   /* a value kept with dht_value_ref */
    char last[128];
    int expired;
    dht_value* val;       /* put: the caller's value, to read its id in the done callback */
    uint64_t id_in_done;
};

static void note_thread(struct op* o) {
    if (pthread_equal(pthread_self(), main_thread))
        o->on_main++;
}

static void done_cb(bool ok, void* ud) {
    struct op* o = ud;
    pthread_mutex_lock(&lk);
    note_thread(o);
    o->done++;
    o->ok += ok;
    if (o->val)
        o->id_in_done = dht_value_get_id(o->val);
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&lk);
}

static void take_value(struct op* o, const dht_value* v) {
    dht_data_view d = dht_value_get_data(v);
    size_t n = d.size < sizeof o->last - 1 ? d.size : sizeof o->last - 1;
    memcpy(o->last, d.data, n);
    o->last[n] = 0;
    if (!o->kept)
        o->kept = dht_value_ref(v);
}

static bool get_cb(const dht_value* v, void* ud) {
    struct op* o = ud;
    pthread_mutex_lock(&lk);
    note_thread(o);
    o->values++;
    take_value(o, v);
    bool more = o->stop_after == 0 || o->values < o->stop_after;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&lk);
    return more;
}

static bool listen_cb(const dht_value* v, bool expired, void* ud) {
    struct op* o = ud;
    pthread_mutex_lock(&lk);
    note_thread(o);
    o->values++;
    o->expired += expired;
    take_value(o, v);
    bool more = o->stop_after == 0 || o->values < o->stop_after;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&lk);
    return more;
}

static void end_cb(void* ud) {
    struct op* o = ud;
    pthread_mutex_lock(&lk);
    note_thread(o);
    o->ended++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&lk);
}

static void drop_kept(struct op* o) {
    if (o->kept)
        dht_value_unref(o->kept);
    o->kept = NULL;
}

static void put_text(dht_runner* r, const dht_infohash* k, const char* text, struct op* o) {
    dht_value* v = dht_value_new_from_string(text);
    o->val = v;
    dht_runner_put(r, k, v, done_cb, o, false);
    uint64_t id = dht_value_get_id(v); /* ours assigns the id during the call */
    CHECK(id != 0);
    CHECK(wait_for(&o->done, 1, LIMIT));
    CHECK(o->id_in_done == id);        /* and the done callback sees it */
    dht_value_unref(v);
}

static dht_runner* start(dht_identity* id) {
    dht_runner* r = dht_runner_new();
    dht_runner_config cfg;
    dht_runner_config_default(&cfg);
    cfg.dht_config.node_config.network = 77;
    if (id) {
        *id = dht_identity_generate("node", NULL);
        cfg.dht_config.id = *id;
    }
    CHECK(dht_runner_run_config(r, 0, &cfg) == 0);
    return r;
}

/* Deleting a runner from one of its own callbacks. */
static int self_deleted;
static void delete_me(bool ok, void* ud) {
    (void)ok;
    dht_runner_delete((dht_runner*)ud);
    bump(&self_deleted);
}

int main(void) {
    main_thread = pthread_self();
    dht_identity ida, idb;
    dht_runner* a = start(&ida);
    dht_runner* b = start(&idb);
    char port[16];
    snprintf(port, sizeof port, "%u", (unsigned)dht_runner_get_bound_port(a, AF_INET));
    CHECK(dht_runner_get_bound_port(a, AF_INET6) != 0 || 1); /* IPv6 may be absent */

    /* Ids: the node id, and the identity's short id. */
    dht_infohash na = dht_runner_get_node_id(a), ia = dht_runner_get_id(a), ca = dht_certificate_get_id(ida.certificate);
    CHECK(!dht_infohash_is_zero(&na) && memcmp(ia.d, ca.d, HASH_LEN) == 0);

    /* Ping: a answers; a UDP socket that never reads does not. */
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons(dht_runner_get_bound_port(a, AF_INET));
    struct op ping = {0};
    dht_runner_ping(b, (struct sockaddr*)&sin, sizeof sin, done_cb, &ping);
    int mute = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in ms;
    socklen_t msl = sizeof ms;
    memset(&ms, 0, sizeof ms);
    ms.sin_family = AF_INET;
    ms.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(mute, (struct sockaddr*)&ms, sizeof ms) == 0 && getsockname(mute, (struct sockaddr*)&ms, &msl) == 0);
    struct op silent = {0};
    dht_runner_ping(b, (struct sockaddr*)&ms, sizeof ms, done_cb, &silent);
    struct op bad = {0};
    dht_runner_ping(b, NULL, 0, done_cb, &bad);
    dht_runner_ping(b, (struct sockaddr*)&sin, 3, done_cb, &bad);
    CHECK(wait_for(&ping.done, 1, LIMIT) && ping.ok == 1 && ping.on_main == 0);
    CHECK(wait_for(&bad.done, 2, LIMIT) && bad.ok == 0);
    CHECK(wait_for(&silent.done, 1, LIMIT) && silent.ok == 0);
    close(mute);

    dht_runner_bootstrap(b, "127.0.0.1", port);

    /* A listen on b before the put from a; a put, then a get. */
    dht_infohash k;
    dht_infohash_get_from_string(&k, "runner.c key");
    struct op lis = {0};
    dht_op_token* lt = dht_runner_listen(b, &k, listen_cb, end_cb, &lis);
    CHECK(lt);
    int put_ok = 0;
    for (int i = 0; i < 10 && !put_ok; i++) {
        struct op put = {0};
        put_text(a, &k, "hello", &put);
        put_ok = put.ok;
        CHECK(put.on_main == 0);
    }
    CHECK(put_ok);
    CHECK(wait_for(&lis.values, 1, LIMIT) && strcmp(lis.last, "hello") == 0 && lis.expired == 0);
    struct op get = {0};
    dht_runner_get(b, &k, get_cb, done_cb, &get);
    CHECK(wait_for(&get.done, 1, LIMIT) && get.ok == 1 && get.values >= 1 && get.on_main == 0);
    /* A value kept from a callback outlives it. */
    CHECK(get.kept && memcmp(dht_value_get_data(get.kept).data, "hello", 5) == 0);
    CHECK(dht_value_get_data(get.kept).size == 5 && strcmp(dht_value_get_user_type(get.kept), "text/plain") == 0);
    drop_kept(&get);

    /* Two more values: a get that stops after one gets done(ok = true) and no more values. */
    struct op p2 = {0}, p3 = {0};
    put_text(a, &k, "second", &p2);
    put_text(a, &k, "third", &p3);
    CHECK(wait_for(&lis.values, 3, LIMIT));
    struct op stop = {0};
    stop.stop_after = 1;
    dht_runner_get(b, &k, get_cb, done_cb, &stop);
    CHECK(wait_for(&stop.done, 1, LIMIT) && stop.ok == 1 && stop.values == 1);
    drop_kept(&stop);

    /* A listen whose callback returns false: its end callback runs, no more values. */
    struct op once = {0};
    once.stop_after = 1;
    dht_op_token* ot = dht_runner_listen(a, &k, listen_cb, end_cb, &once);
    CHECK(wait_for(&once.ended, 1, LIMIT) && once.values == 1 && once.on_main == 0);
    dht_op_token_delete(ot);
    drop_kept(&once);

    /* cancel_listen: the end callback runs on the callback thread; later puts are not heard. */
    dht_runner_cancel_listen(b, &k, lt);
    CHECK(wait_for(&lis.ended, 1, LIMIT) && lis.on_main == 0);
    int heard = read_flag(&lis.values);
    struct op p4 = {0};
    put_text(a, &k, "fourth", &p4);
    struct op g4 = {0};
    dht_runner_get(b, &k, get_cb, done_cb, &g4);
    CHECK(wait_for(&g4.done, 1, LIMIT) && g4.values >= 4);
    CHECK(read_flag(&lis.values) == heard && read_flag(&lis.ended) == 1);
    dht_runner_cancel_listen(b, &k, lt); /* a second cancel does nothing */
    dht_op_token_delete(lt);
    drop_kept(&lis);
    drop_kept(&g4);

    /* Signed: the owner is a's identity. */
    dht_infohash ks;
    dht_infohash_get_from_string(&ks, "runner.c signed");
    struct op ps = {0};
    dht_value* sv = dht_value_new_from_string("signed");
    dht_runner_put_signed(a, &ks, sv, done_cb, &ps, false);
    dht_value_unref(sv);
    CHECK(wait_for(&ps.done, 1, LIMIT) && ps.ok == 1);
    struct op gs = {0};
    dht_runner_get(b, &ks, get_cb, done_cb, &gs);
    CHECK(wait_for(&gs.done, 1, LIMIT) && gs.values == 1);
    dht_publickey* owner = dht_value_get_owner(gs.kept);
    CHECK(owner && memcmp(dht_publickey_get_id(owner).d, ia.d, HASH_LEN) == 0);
    dht_publickey_delete(owner);
    drop_kept(&gs);

    /* Encrypted to b's long id: b reads it, with b as recipient. */
    dht_infohash ke;
    dht_infohash_get_from_string(&ke, "runner.c encrypted");
    dht_pkid to = dht_certificate_get_long_id(idb.certificate);
    struct op pe = {0};
    dht_value* ev = dht_value_new_from_string("for b");
    dht_runner_put_encrypted(a, &ke, &to, ev, done_cb, &pe, false);
    CHECK(wait_for(&pe.done, 1, LIMIT) && pe.ok == 1);
    struct op ge = {0};
    dht_runner_get(b, &ke, get_cb, done_cb, &ge);
    CHECK(wait_for(&ge.done, 1, LIMIT) && ge.values == 1 && strcmp(ge.last, "for b") == 0);
    dht_infohash rcpt = dht_value_get_recipient(ge.kept), ib = dht_runner_get_id(b);
    CHECK(memcmp(rcpt.d, ib.d, HASH_LEN) == 0);
    drop_kept(&ge);
    /* To a key nobody has seen, with a NULL recipient, without an identity: done(false). */
    memset(to.d, 7, sizeof to.d);
    struct op bad_put = {0};
    dht_runner_put_encrypted(a, &ke, &to, ev, done_cb, &bad_put, false);
    dht_runner_put_encrypted(a, &ke, NULL, ev, done_cb, &bad_put, false);
    dht_runner* anon = start(NULL);
    dht_runner_put_signed(anon, &ks, ev, done_cb, &bad_put, false);
    dht_value_unref(ev);

    /* Bad input on a running runner: done(false) on the callback thread. */
    static uint8_t big[70 * 1024];
    dht_value* bv = dht_value_new(big, sizeof big);
    dht_runner_put(a, &k, bv, done_cb, &bad_put, false);
    dht_value_unref(bv);
    dht_runner_put(a, &k, NULL, done_cb, &bad_put, false);
    dht_runner_put(a, NULL, bv, done_cb, &bad_put, false);
    dht_infohash zero;
    dht_infohash_zero(&zero);
    dht_runner_get(a, &zero, get_cb, done_cb, &bad_put);
    dht_runner_get(a, NULL, get_cb, done_cb, &bad_put);
    struct op bad_listen = {0};
    dht_op_token* zt = dht_runner_listen(a, NULL, listen_cb, end_cb, &bad_listen);
    CHECK(wait_for(&bad_put.done, 8, LIMIT) && bad_put.ok == 0 && bad_put.on_main == 0);
    CHECK(wait_for(&bad_listen.ended, 1, LIMIT));
    dht_op_token_delete(zt);
    /* NULL callbacks: accept everything, report nothing. */
    dht_runner_get(b, &k, NULL, NULL, NULL);
    dht_op_token* nt = dht_runner_listen(b, &k, NULL, NULL, NULL);
    dht_runner_cancel_listen(b, &k, nt);
    dht_op_token_delete(nt);

    /* A zero-length value is a value: put, then got back empty. */
    dht_infohash k0;
    dht_infohash_get_from_string(&k0, "runner.c empty");
    dht_value* empty = dht_value_new(NULL, 0);
    struct op p0 = {0};
    dht_runner_put(a, &k0, empty, done_cb, &p0, false);
    dht_value_unref(empty);
    CHECK(wait_for(&p0.done, 1, LIMIT) && p0.ok == 1);
    struct op g0 = {0};
    dht_runner_get(b, &k0, get_cb, done_cb, &g0);
    CHECK(wait_for(&g0.done, 1, LIMIT) && g0.values == 1 && dht_value_get_data(g0.kept).size == 0);
    drop_kept(&g0);

    /* Permanent put with a chosen id, then cancel_put. */
    dht_infohash kp;
    dht_infohash_get_from_string(&kp, "runner.c permanent");
    dht_value* pv = dht_value_with_id_new((const uint8_t*)"perm", 4, 77);
    struct op pp = {0};
    dht_runner_put(a, &kp, pv, done_cb, &pp, true);
    CHECK(dht_value_get_id(pv) == 77);
    dht_value_unref(pv);
    CHECK(wait_for(&pp.done, 1, LIMIT) && pp.ok == 1);
    dht_runner_cancel_put(a, &kp, 77);

    /* Public addresses: a NULL-terminated malloc'ed array (or NULL). */
    struct sockaddr** addrs = dht_runner_get_public_address(b);
    if (addrs) {
        for (struct sockaddr** p = addrs; *p; p++) {
            CHECK((*p)->sa_family == AF_INET || (*p)->sa_family == AF_INET6);
            free(*p);
        }
        free(addrs);
    }

    /* Shutdown: the callback on the callback thread; still "running"; operations then fail at
     * once on this thread. */
    struct op sd = {0};
    dht_runner_shutdown(a, end_cb, &sd);
    CHECK(wait_for(&sd.ended, 1, LIMIT) && sd.on_main == 0);
    CHECK(dht_runner_is_running(a));
    struct op after = {0};
    dht_runner_get(a, &k, get_cb, done_cb, &after);
    CHECK(after.done == 1 && after.ok == 0 && after.on_main == 1);
    dht_runner_shutdown(a, end_cb, &after);
    CHECK(after.ended == 1 && after.on_main == 2);
    CHECK(dht_runner_get_public_address(a) == NULL);
    /* Run again after shutdown. */
    CHECK(dht_runner_run(a, 0) == 0 && dht_runner_is_running(a));
    struct op again = {0};
    dht_runner_get(a, &k, NULL, done_cb, &again);
    CHECK(wait_for(&again.done, 1, LIMIT) && again.on_main == 0);
    dht_runner_delete(a);

    /* Delete with a listen active and a get pending: their end callbacks run on this thread,
     * before delete returns. */
    struct op last = {0}, pending = {0};
    dht_op_token* lt2 = dht_runner_listen(b, &k, listen_cb, end_cb, &last);
    CHECK(wait_for(&last.values, 1, LIMIT));
    dht_infohash nowhere;
    dht_infohash_get_from_string(&nowhere, "runner.c nowhere");
    dht_runner_get(b, &nowhere, get_cb, done_cb, &pending);
    int mute2 = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in m2;
    socklen_t m2l = sizeof m2;
    memset(&m2, 0, sizeof m2);
    m2.sin_family = AF_INET;
    m2.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(mute2, (struct sockaddr*)&m2, sizeof m2) == 0 && getsockname(mute2, (struct sockaddr*)&m2, &m2l) == 0);
    struct op unanswered = {0};
    dht_runner_ping(b, (struct sockaddr*)&m2, sizeof m2, done_cb, &unanswered);
    dht_runner_delete(b);
    CHECK(last.ended == 1 && last.on_main == 1);
    CHECK(pending.done == 1);
    CHECK(unanswered.done == 1 && unanswered.ok == 0); /* a ping in flight ends with the runner */
    close(mute2);
    dht_op_token_delete(lt2);
    drop_kept(&last);

    /* Deleted from its own callback: no deadlock. */
    dht_runner_get(anon, &k, NULL, delete_me, anon);
    CHECK(wait_for(&self_deleted, 1, LIMIT));
    CHECK(!dht_runner_is_running(anon));

    dht_identity_delete(&ida);
    dht_identity_delete(&idb);
    printf("runner ok %d checks\n", checks);
    return 0;
}
