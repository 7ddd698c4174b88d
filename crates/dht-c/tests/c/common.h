/* Helpers shared by the C test programs: checks that report the line, and waits with deadlines
 * on flags that callbacks set. */
#ifndef TEST_COMMON_H
#define TEST_COMMON_H
#define _POSIX_C_SOURCE 200809L
#include <opendht_c.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int checks = 0;
#define CHECK(c) do { checks++; if (!(c)) { fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); exit(1); } } while (0)

static pthread_mutex_t lk = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

/* Waits until *flag (under lk) is at least `want`, at most `secs`; whether it got there. */
static inline int wait_for(const int* flag, int want, int secs) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += secs;
    pthread_mutex_lock(&lk);
    while (*flag < want) {
        if (pthread_cond_timedwait(&cv, &lk, &until) == ETIMEDOUT)
            break;
    }
    int ok = *flag >= want;
    pthread_mutex_unlock(&lk);
    return ok;
}

static inline void bump(int* flag) {
    pthread_mutex_lock(&lk);
    (*flag)++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&lk);
}

static inline int read_flag(const int* flag) {
    pthread_mutex_lock(&lk);
    int v = *flag;
    pthread_mutex_unlock(&lk);
    return v;
}
#endif
