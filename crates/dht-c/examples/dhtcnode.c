/*
 * dhtcnode: a small DHT node on OpenDHT's C API, driven by lines on stdin.
 *
 * Written with the calls that OpenDHT 2.4.12's opendht_c.h and ours share, so the same source
 * builds against either library:
 *   cc dhtcnode.c $(pkg-config --cflags --libs opendht-c) -lpthread
 *
 * Usage: dhtcnode [-p PORT] [-n NETWORK] [-b HOST:PORT]
 * Commands (one per line; results are printed as they arrive, one line each):
 *   ll               node id and IPv4 port
 *   la               public addresses as peers see them
 *   g KEY            get:     "get N value: DATA" per value, then "get N done: ok|failed"
 *   p KEY TEXT       put:     "put N done: ok|failed id=ID"
 *   l KEY            listen:  "listen N started", then "listen N new|expired: DATA"
 *   c N              cancel listen N: "listen N ended" once it is over
 *   P IPV4 PORT      ping a node: "ping done: ok|failed" (an answering node joins the routing table)
 *   b N MS           bench: N rounds of put then get of a fresh key, prints "bench put|get ..."
 *   q (or EOF)       shut down: "stopping", "stopped", then every listen ends
 * KEY is 40 hex chars, or any word (hashed with SHA-1, as "Using h(KEY) = HEX" says).
 *
 * Ownership, as the API says: each operation's context is freed in its done callback (for a
 * listen: its end callback, which also deletes the token); a value put is unref'd in the put's
 * done callback, where its id is readable.
 */
#define _POSIX_C_SOURCE 200809L
#include <opendht_c.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_LISTENS 64

static pthread_mutex_t lk = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int op_serial = 0;

/* One line of output at a time, flushed: another program reads it through a pipe. */
#define OUT(...) do { pthread_mutex_lock(&lk); printf(__VA_ARGS__); fflush(stdout); pthread_mutex_unlock(&lk); } while (0)

struct listen_ctx {
    int n;
    dht_op_token* token;
};
static struct listen_ctx* listens[MAX_LISTENS];
static dht_infohash listen_keys[MAX_LISTENS];

struct op_ctx {
    int n;
    dht_value* value;   /* put: our reference, unref'd when done */
};

static bool stopped = false;

static void parse_key(dht_infohash* h, const char* key) {
    dht_infohash_from_hex_null(h, key);
    if (dht_infohash_is_zero(h)) {
        dht_infohash_get_from_string(h, key);
        OUT("Using h(%s) = %s\n", key, dht_infohash_print(h));
    }
}

static bool get_cb(const dht_value* value, void* user_data) {
    struct op_ctx* ctx = user_data;
    dht_data_view v = dht_value_get_data(value);
    OUT("get %d value: %.*s\n", ctx->n, (int)v.size, (const char*)v.data);
    return true;
}

static void get_done(bool ok, void* user_data) {
    struct op_ctx* ctx = user_data;
    OUT("get %d done: %s\n", ctx->n, ok ? "ok" : "failed");
    free(ctx);
}

static void put_done(bool ok, void* user_data) {
    struct op_ctx* ctx = user_data;
    OUT("put %d done: %s id=%016" PRIx64 "\n", ctx->n, ok ? "ok" : "failed", dht_value_get_id(ctx->value));
    dht_value_unref(ctx->value);
    free(ctx);
}

static bool listen_cb(const dht_value* value, bool expired, void* user_data) {
    struct listen_ctx* ctx = user_data;
    dht_data_view v = dht_value_get_data(value);
    OUT("listen %d %s: %.*s\n", ctx->n, expired ? "expired" : "new", (int)v.size, (const char*)v.data);
    return true;
}

/* The listen is over: free what belongs to it. */
static void listen_end(void* user_data) {
    struct listen_ctx* ctx = user_data;
    pthread_mutex_lock(&lk);
    printf("listen %d ended\n", ctx->n);
    fflush(stdout);
    if (ctx->token)
        dht_op_token_delete(ctx->token);
    listens[ctx->n] = NULL;
    pthread_mutex_unlock(&lk);
    free(ctx);
}

static void ping_done(bool ok, void* user_data) {
    (void)user_data;
    OUT("ping done: %s\n", ok ? "ok" : "failed");
}

static void shutdown_done(void* user_data) {
    (void)user_data;
    pthread_mutex_lock(&lk);
    stopped = true;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&lk);
}

/* ---- bench: put then get of fresh keys, one at a time ---- */
struct bench_ctx {
    bool done;
    bool ok;
    int values;
};

static void bench_done(bool ok, void* user_data) {
    struct bench_ctx* b = user_data;
    pthread_mutex_lock(&lk);
    b->done = true;
    b->ok = ok;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&lk);
}

static bool bench_get_cb(const dht_value* value, void* user_data) {
    struct bench_ctx* b = user_data;
    (void)value;
    pthread_mutex_lock(&lk);
    b->values++;
    pthread_mutex_unlock(&lk);
    return true;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static bool bench_wait(struct bench_ctx* b, double limit_ms) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)(limit_ms / 1000) + 1;
    pthread_mutex_lock(&lk);
    while (!b->done) {
        if (pthread_cond_timedwait(&cv, &lk, &until) == ETIMEDOUT)
            break;
    }
    bool done = b->done;
    pthread_mutex_unlock(&lk);
    return done;
}

static int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

static void bench(dht_runner* runner, int rounds, int limit_ms) {
    double* put_ms = calloc((size_t)rounds, sizeof(double));
    double* get_ms = calloc((size_t)rounds, sizeof(double));
    int done = 0, failed = 0;
    for (int i = 0; i < rounds && put_ms && get_ms; i++) {
        char text[64];
        dht_infohash key;
        snprintf(text, sizeof text, "bench %d %ld", i, (long)getpid());
        dht_infohash_random(&key);
        dht_value* v = dht_value_new((const uint8_t*)text, strlen(text));
        struct bench_ctx pb = {false, false, 0};
        double t0 = now_ms();
        dht_runner_put(runner, &key, v, bench_done, &pb, false);
        dht_value_unref(v);
        bool finished = bench_wait(&pb, limit_ms);
        double t1 = now_ms();
        struct bench_ctx gb = {false, false, 0};
        if (finished)
            dht_runner_get(runner, &key, bench_get_cb, bench_done, &gb);
        if (!finished || !bench_wait(&gb, limit_ms)) {
            /* A callback may still come: keep the contexts valid by leaving now. */
            OUT("bench timeout at round %d\n", i);
            _exit(3);
        }
        double t2 = now_ms();
        if (!pb.ok || gb.values < 1)
            failed++;
        put_ms[done] = t1 - t0;
        get_ms[done] = t2 - t1;
        done++;
    }
    if (done > 0) {
        qsort(put_ms, (size_t)done, sizeof(double), cmp_double);
        qsort(get_ms, (size_t)done, sizeof(double), cmp_double);
        OUT("bench put rounds=%d failed=%d median_ms=%.3f p90_ms=%.3f\n", done, failed, put_ms[done / 2], put_ms[done * 9 / 10]);
        OUT("bench get rounds=%d failed=%d median_ms=%.3f p90_ms=%.3f\n", done, failed, get_ms[done / 2], get_ms[done * 9 / 10]);
    }
    free(put_ms);
    free(get_ms);
}

static void print_addresses(dht_runner* runner) {
    struct sockaddr** addrs = dht_runner_get_public_address(runner);
    if (!addrs) {
        OUT("no public address\n");
        return;
    }
    for (struct sockaddr** a = addrs; *a; a++) {
        char ip[INET6_ADDRSTRLEN] = "?";
        if ((*a)->sa_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in*)(void*)*a)->sin_addr, ip, sizeof ip);
        else if ((*a)->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6*)(void*)*a)->sin6_addr, ip, sizeof ip);
        OUT("Found public address: %s\n", ip);
        free(*a);
    }
    free(addrs);
}

int main(int argc, char** argv) {
    int port = 0;
    uint32_t network = 0;
    const char* bootstrap = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "p:n:b:")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'n': network = (uint32_t)strtoul(optarg, NULL, 0); break;
        case 'b': bootstrap = optarg; break;
        default:
            fprintf(stderr, "usage: %s [-p PORT] [-n NETWORK] [-b HOST:PORT]\n", argv[0]);
            return 2;
        }
    }

    dht_runner* runner = dht_runner_new();
    dht_runner_config config;
    dht_runner_config_default(&config);
    config.dht_config.node_config.network = network;
    if (dht_runner_run_config(runner, (in_port_t)port, &config) != 0) {
        fprintf(stderr, "cannot run on port %d\n", port);
        dht_runner_delete(runner);
        return 1;
    }
    if (bootstrap) {
        OUT("Bootstrap using %s\n", bootstrap);
        dht_runner_bootstrap(runner, bootstrap, NULL);
    }
    dht_infohash id = dht_runner_get_node_id(runner);
    OUT("version %s\n", dht_version());
    OUT("node %s port %u\n", dht_infohash_print(&id), (unsigned)dht_runner_get_bound_port(runner, AF_INET));

    char line[512];
    while (fgets(line, sizeof line, stdin)) {
        char cmd[64] = "", key[64] = "", text[256] = "";
        if (sscanf(line, "%63s %63s %255[^\n]", cmd, key, text) < 1)
            continue;
        dht_infohash h;
        if (strcmp(cmd, "q") == 0) {
            break;
        } else if (strcmp(cmd, "ll") == 0) {
            id = dht_runner_get_node_id(runner);
            OUT("node %s port %u\n", dht_infohash_print(&id), (unsigned)dht_runner_get_bound_port(runner, AF_INET));
        } else if (strcmp(cmd, "la") == 0) {
            print_addresses(runner);
        } else if (strcmp(cmd, "g") == 0 && key[0]) {
            parse_key(&h, key);
            struct op_ctx* ctx = calloc(1, sizeof *ctx);
            pthread_mutex_lock(&lk);
            ctx->n = ++op_serial;
            pthread_mutex_unlock(&lk);
            dht_runner_get(runner, &h, get_cb, get_done, ctx);
        } else if (strcmp(cmd, "p") == 0 && key[0] && text[0]) {
            parse_key(&h, key);
            struct op_ctx* ctx = calloc(1, sizeof *ctx);
            pthread_mutex_lock(&lk);
            ctx->n = ++op_serial;
            pthread_mutex_unlock(&lk);
            ctx->value = dht_value_new_from_string(text);
            dht_runner_put(runner, &h, ctx->value, put_done, ctx, false);
        } else if (strcmp(cmd, "l") == 0 && key[0]) {
            parse_key(&h, key);
            pthread_mutex_lock(&lk);
            int n = 0;
            while (n < MAX_LISTENS && listens[n])
                n++;
            if (n == MAX_LISTENS) {
                pthread_mutex_unlock(&lk);
                OUT("too many listens\n");
                continue;
            }
            struct listen_ctx* ctx = calloc(1, sizeof *ctx);
            ctx->n = n;
            listens[n] = ctx;
            listen_keys[n] = h;
            /* Held across the call: the end callback (which deletes the token) waits for it. */
            ctx->token = dht_runner_listen(runner, &h, listen_cb, listen_end, ctx);
            printf("listen %d started\n", n);
            fflush(stdout);
            pthread_mutex_unlock(&lk);
        } else if (strcmp(cmd, "c") == 0 && key[0]) {
            int n = atoi(key);
            pthread_mutex_lock(&lk);
            if (n >= 0 && n < MAX_LISTENS && listens[n])
                dht_runner_cancel_listen(runner, &listen_keys[n], listens[n]->token);
            pthread_mutex_unlock(&lk);
        } else if (strcmp(cmd, "P") == 0 && key[0] && text[0]) {
            struct sockaddr_in sin;
            memset(&sin, 0, sizeof sin);
            sin.sin_family = AF_INET;
            sin.sin_port = htons((uint16_t)atoi(text));
            if (inet_pton(AF_INET, key, &sin.sin_addr) != 1) {
                OUT("bad address: %s\n", key);
                continue;
            }
            dht_runner_ping(runner, (struct sockaddr*)&sin, sizeof sin, ping_done, NULL);
        } else if (strcmp(cmd, "b") == 0 && key[0]) {
            bench(runner, atoi(key), text[0] ? atoi(text) : 10000);
        } else {
            OUT("Unknown command: %s\n", cmd);
        }
    }

    OUT("stopping\n");
    dht_runner_shutdown(runner, shutdown_done, NULL);
    pthread_mutex_lock(&lk);
    while (!stopped)
        pthread_cond_wait(&cv, &lk);
    pthread_mutex_unlock(&lk);
    OUT("stopped\n");
    /* Ends what is left: each listen's end callback runs here. */
    dht_runner_delete(runner);
    OUT("deleted\n");
    return 0;
}
