/* heartbeat.c — the heartbeat thread and the loop side of its answers (see heartbeat.h). */
#include "heartbeat.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/pb.h"
#include "rdb.h"
#include "run.h"

/* Revocations are asked for again from this long before the last answer's watermark: a
 * revocation committed just after a lookup may carry a slightly earlier time. Asking twice
 * is harmless (a run is dropped once). */
#define REVOKED_OVERLAP_MS 5000
#define MIN_WAIT_MS 200

struct heartbeat {
    runner *r;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    char runner_id[128]; /* copied: the thread reads nothing the loop writes */
    int64_t interval_ms;
    int64_t since_ms;   /* thread only */
    bool warned;        /* thread only: failures logged once until one succeeds */
    kx_timer *db_timer; /* loop: /readyz view of Postgres */
};

/* The loop side: drop the runs whose lease was revoked. */
typedef struct revoked_batch {
    runner *r;
    size_t n;
    char (*ids)[40];
    int64_t *epochs;
} revoked_batch;

static void free_revoked(void *arg)
{
    revoked_batch *b = arg;
    free(b->ids);
    free(b->epochs);
    free(b);
}

static void drop_revoked(kx_loop *loop, void *arg)
{
    revoked_batch *b = arg;
    for (size_t i = 0; i < b->n; i++) {
        run *x = runner_find(b->r, b->ids[i]);
        if (x == NULL || x->epoch >= b->epochs[i])
            continue; /* not held (any more), or held at a newer epoch (claimed again) */
        char why[120];
        snprintf(why, sizeof why, "lease revoked: the run is at epoch %lld now, we held %lld",
                 (long long)b->epochs[i], (long long)x->epoch);
        kx_counter_add(kx_metrics_counter("kx_runner_leases_revoked_total", "",
                                          "Runs dropped because a heartbeat answer said their "
                                          "lease was taken away"),
                       1);
        run_stop(x, why);
    }
    free_revoked(b);
}

static void post_revoked(heartbeat *h, const Kx__V1__RunnerHeartbeatAnswer *a)
{
    revoked_batch *b = calloc(1, sizeof *b);
    if (b != NULL) {
        b->r = h->r;
        b->ids = calloc(a->n_revoked, sizeof *b->ids);
        b->epochs = calloc(a->n_revoked, sizeof *b->epochs);
    }
    if (b == NULL || b->ids == NULL || b->epochs == NULL) {
        kx_error("heartbeat: out of memory handling %zu revoked lease(s); asking again",
                 a->n_revoked);
        if (b != NULL) {
            free(b->ids);
            free(b->epochs);
        }
        free(b);
        return;
    }
    for (size_t i = 0; i < a->n_revoked; i++) {
        const Kx__V1__RunLease *l = a->revoked[i];
        if (l == NULL || kx_pb_str_empty(l->run_id))
            continue;
        snprintf(b->ids[b->n], sizeof b->ids[b->n], "%s", l->run_id);
        b->epochs[b->n] = l->lease_epoch;
        b->n++;
    }
    /* Owned: a batch posted while the loop shuts down is freed by kx_loop_free, not leaked. */
    if (kx_loop_post_owned(h->r->loop, drop_revoked, b, free_revoked) != KX_OK)
        free_revoked(b);
}

/* One heartbeat and its answer. true when the scheduler renewed the lease. */
static bool beat(heartbeat *h)
{
    runner *r = h->r;
    Kx__V1__RunnerHeartbeat hb = KX__V1__RUNNER_HEARTBEAT__INIT;
    hb.runner_id = h->runner_id;
    hb.sent_at_ms = kx_now_ms();
    hb.capacity = runner_free_slots(r);
    hb.held = atomic_load(&r->held);
    hb.revoked_since_ms = h->since_ms;
    int64_t wait = h->interval_ms > MIN_WAIT_MS ? h->interval_ms : MIN_WAIT_MS;
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(wait), NULL);
    natsMsg *reply = NULL;
    kx_err err = kx_bus_request_pb(r->bus, KX_SUBJ_RUN_HB, &hb.base, &meta, &reply);
    if (err != KX_OK) {
        if (!h->warned)
            kx_warn("heartbeat: no answer on %s: %s (the scheduler may take our runs for dead "
                    "if this lasts longer than the lease TTL)",
                    KX_SUBJ_RUN_HB, kx_err_str(err));
        h->warned = true;
        return false;
    }
    Kx__V1__RunnerHeartbeatAnswer *a =
        kx_pb_unpack(&kx__v1__runner_heartbeat_answer__descriptor, natsMsg_GetData(reply),
                     (size_t)natsMsg_GetDataLength(reply));
    kx_bus_msg_free(reply);
    if (a == NULL || !a->applied) {
        if (!h->warned)
            kx_warn("heartbeat: the scheduler could not renew our lease%s",
                    a == NULL ? " (its answer is not a RunnerHeartbeatAnswer)" : "");
        h->warned = true;
        kx_pb_free(a);
        return false;
    }
    if (h->warned)
        kx_info("heartbeat: the scheduler renews our lease again");
    h->warned = false;
    if (a->n_revoked > 0)
        post_revoked(h, a);
    if (a->watermark_ms > 0)
        h->since_ms = a->truncated ? a->watermark_ms : a->watermark_ms - REVOKED_OVERLAP_MS;
    bool more = a->truncated;
    kx_pb_free(a);
    if (more) /* the rest of the revocations, at once */
        return beat(h);
    return true;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void *heartbeat_main(void *arg)
{
    heartbeat *h = arg;
    while (!atomic_load(&h->stop)) {
        int64_t t0 = kx_mono_ms();
        beat(h);
        int64_t next = t0 + h->interval_ms;
        while (!atomic_load(&h->stop) && kx_mono_ms() < next) {
            int64_t left = next - kx_mono_ms();
            sleep_ms(left < 50 ? left : 50);
        }
    }
    return NULL;
}

/* Loop: keep /readyz honest about Postgres when no run's work tells us (a probe on a database
 * thread: the loop never waits for it). */
static void db_check(kx_loop *loop, void *arg)
{
    heartbeat *h = arg;
    runner *r = h->r;
    h->db_timer = NULL;
    if (!atomic_load(&r->db_ok) || r->nheld == 0)
        rdb_probe(r);
    h->db_timer = kx_loop_timer(loop, h->interval_ms, db_check, h);
}

kx_err heartbeat_start(runner *r, heartbeat **out)
{
    *out = NULL;
    heartbeat *h = calloc(1, sizeof *h);
    if (h == NULL)
        return KX_ERR_NOMEM;
    h->r = r;
    snprintf(h->runner_id, sizeof h->runner_id, "%s", r->instance_id);
    h->interval_ms = r->cfg->heartbeat_ms;
    h->since_ms = kx_now_ms() - REVOKED_OVERLAP_MS;
    atomic_init(&h->stop, false);
    h->db_timer = kx_loop_timer(r->loop, h->interval_ms, db_check, h);
    if (h->db_timer == NULL || pthread_create(&h->thread, NULL, heartbeat_main, h) != 0) {
        kx_error("heartbeat: could not start");
        heartbeat_free(h);
        return KX_ERR_INTERNAL;
    }
    h->started = true;
    *out = h;
    return KX_OK;
}

void heartbeat_free(heartbeat *h)
{
    if (h == NULL)
        return;
    atomic_store(&h->stop, true);
    if (h->started)
        pthread_join(h->thread, NULL);
    kx_timer_cancel(h->db_timer);
    free(h);
}
