/* db_lanes.c — n kx_db_workers and the key that picks one (see kx/db_lanes.h). */
#include "kx/db_lanes.h"

#include <stdlib.h>

#include "kx/log.h"
#include "kx/time.h"

struct kx_db_lanes {
    kx_db_worker **w;
    size_t n;
};

static size_t key_hash(const char *s)
{
    size_t h = 1469598103934665603ull; /* FNV-1a */
    for (; s != NULL && *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

kx_err kx_db_lanes_new(const char *conninfo, const kx_db_stmt *stmts, kx_loop *loop, size_t n,
                       size_t max_queue, kx_db_lanes **out)
{
    *out = NULL;
    kx_db_lanes *l = calloc(1, sizeof *l);
    if (l == NULL)
        return KX_ERR_NOMEM;
    if (n == 0)
        n = 1;
    l->w = calloc(n, sizeof *l->w);
    if (l->w == NULL) {
        free(l);
        return KX_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        kx_err err = kx_db_worker_new(conninfo, stmts, loop, max_queue, &l->w[i]);
        if (err != KX_OK) {
            kx_db_lanes_free(l);
            return err;
        }
        l->n++;
    }
    *out = l;
    return KX_OK;
}

size_t kx_db_lanes_count(const kx_db_lanes *l)
{
    return l != NULL ? l->n : 0;
}

static size_t lane_of(const kx_db_lanes *l, const char *key)
{
    return key != NULL ? key_hash(key) % l->n : 0;
}

kx_err kx_db_lanes_submit(kx_db_lanes *l, const char *key, kx_db_job_run run, kx_db_job_done done,
                          void *arg)
{
    if (l == NULL || l->n == 0)
        return KX_ERR_UNAVAILABLE;
    return kx_db_worker_submit(l->w[lane_of(l, key)], run, done, arg);
}

kx_err kx_db_lanes_submit_group(kx_db_lanes *l, const char *key, const kx_db_group_job *how,
                                kx_db_job_done done, void *arg)
{
    if (l == NULL || l->n == 0)
        return KX_ERR_UNAVAILABLE;
    return kx_db_worker_submit_group(l->w[lane_of(l, key)], how, done, arg);
}

kx_db_group_stats kx_db_lanes_group_stats(kx_db_lanes *l)
{
    kx_db_group_stats sum = {0};
    for (size_t i = 0; l != NULL && i < l->n; i++) {
        kx_db_group_stats s = kx_db_worker_group_stats(l->w[i]);
        sum.groups += s.groups;
        sum.grouped += s.grouped;
        sum.rollbacks += s.rollbacks;
        sum.solo += s.solo;
        sum.pipelines += s.pipelines;
    }
    return sum;
}

bool kx_db_lanes_flush(kx_db_lanes *l, int64_t timeout_ms)
{
    if (l == NULL)
        return true;
    int64_t until = kx_mono_ms() + timeout_ms;
    bool idle = true;
    for (size_t i = 0; i < l->n; i++) {
        int64_t left = until - kx_mono_ms();
        if (!kx_db_worker_flush(l->w[i], left > 0 ? left : 0)) {
            kx_warn("db: connection %zu still busy after %lld ms at exit", i,
                    (long long)timeout_ms);
            idle = false;
        }
    }
    return idle;
}

void kx_db_lanes_free(kx_db_lanes *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++)
        kx_db_worker_free(l->w[i]);
    free(l->w);
    free(l);
}
