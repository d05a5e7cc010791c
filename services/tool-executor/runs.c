/* runs.c — the executor's bounded memory of runs: epochs seen and STOPs (see runs.h). */
#include "runs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct run_entry {
    struct run_entry *hnext;         /* hash chain */
    struct run_entry *older, *newer; /* use order: t->oldest ... t->newest */
    int64_t touched;                 /* monotonic ms of the last use */
    int64_t max_epoch;               /* newest epoch seen from a call (0: none) */
    bool stopped;
    int64_t stop_epoch; /* fenced epochs: <= stop_epoch (0 = all) */
    char reason[160];
    char why[200];
    char run_id[];
} run_entry;

struct te_runs {
    run_entry **buckets;
    size_t nbuckets, count, capacity;
    int64_t ttl_ms;
    run_entry *oldest, *newest;
};

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

te_runs *te_runs_new(size_t capacity, int64_t ttl_ms)
{
    te_runs *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->capacity = capacity > 0 ? capacity : 1;
    t->nbuckets = 64;
    while (t->nbuckets < t->capacity && t->nbuckets < ((size_t)1 << 20))
        t->nbuckets <<= 1;
    t->buckets = calloc(t->nbuckets, sizeof *t->buckets);
    if (t->buckets == NULL) {
        free(t);
        return NULL;
    }
    t->ttl_ms = ttl_ms;
    return t;
}

static void list_unlink(te_runs *t, run_entry *e)
{
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        t->oldest = e->newer;
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        t->newest = e->older;
    e->older = e->newer = NULL;
}

static void list_push_newest(te_runs *t, run_entry *e)
{
    e->older = t->newest;
    e->newer = NULL;
    if (t->newest != NULL)
        t->newest->newer = e;
    else
        t->oldest = e;
    t->newest = e;
}

static void remove_entry(te_runs *t, run_entry *e)
{
    run_entry **p = &t->buckets[hash(e->run_id) & (t->nbuckets - 1)];
    while (*p != NULL && *p != e)
        p = &(*p)->hnext;
    if (*p == e)
        *p = e->hnext;
    list_unlink(t, e);
    t->count--;
    free(e);
}

static void expire(te_runs *t, int64_t now)
{
    /* False positive: remove_entry unlinks the entry (list_unlink moves t->oldest to the next
     * one) before it frees it, so t->oldest never points at freed memory here */
    // NOLINTNEXTLINE(clang-analyzer-unix.Malloc): safe, see the comment above
    while (t->oldest != NULL && now - t->oldest->touched >= t->ttl_ms)
        remove_entry(t, t->oldest);
}

void te_runs_free(te_runs *t)
{
    if (t == NULL)
        return;
    while (t->oldest != NULL)
        remove_entry(t, t->oldest);
    free(t->buckets);
    free(t);
}

static run_entry *find(te_runs *t, const char *run_id)
{
    for (run_entry *e = t->buckets[hash(run_id) & (t->nbuckets - 1)]; e != NULL; e = e->hnext) {
        if (strcmp(e->run_id, run_id) == 0)
            return e;
    }
    return NULL;
}

/* The entry for run_id, created (evicting the oldest when full) and marked used at now. */
static run_entry *get(te_runs *t, const char *run_id, int64_t now)
{
    expire(t, now);
    run_entry *e = find(t, run_id);
    if (e == NULL) {
        if (t->count >= t->capacity && t->oldest != NULL)
            remove_entry(t, t->oldest);
        size_t n = strlen(run_id);
        e = calloc(1, sizeof *e + n + 1);
        if (e == NULL)
            return NULL;
        memcpy(e->run_id, run_id, n + 1);
        size_t b = hash(run_id) & (t->nbuckets - 1);
        e->hnext = t->buckets[b];
        t->buckets[b] = e;
        t->count++;
    } else {
        list_unlink(t, e);
    }
    e->touched = now;
    list_push_newest(t, e);
    return e;
}

static bool fenced(const run_entry *e, int64_t epoch)
{
    return e->stopped && (e->stop_epoch == 0 || epoch <= e->stop_epoch);
}

te_run_verdict te_runs_check(te_runs *t, const char *run_id, int64_t epoch, int64_t now,
                             const char **why)
{
    if (why != NULL)
        *why = "";
    if (run_id == NULL || run_id[0] == '\0')
        return TE_RUN_OK;
    run_entry *e = get(t, run_id, now);
    if (e == NULL)
        return TE_RUN_OK;
    if (fenced(e, epoch)) {
        if (why != NULL)
            *why = e->reason;
        return TE_RUN_STOPPED;
    }
    if (epoch < e->max_epoch) {
        snprintf(e->why, sizeof e->why,
                 "lease epoch %lld of run %.40s is stale: epoch %lld has called since",
                 (long long)epoch, run_id, (long long)e->max_epoch);
        if (why != NULL)
            *why = e->why;
        return TE_RUN_STALE;
    }
    e->max_epoch = epoch;
    return TE_RUN_OK;
}

void te_runs_stop(te_runs *t, const char *run_id, int64_t epoch, const char *reason, int64_t now)
{
    if (run_id == NULL || run_id[0] == '\0')
        return;
    run_entry *e = get(t, run_id, now);
    if (e == NULL)
        return;
    /* The wider fence wins: 0 (all epochs) over any number, else the higher epoch. */
    if (!e->stopped || epoch == 0 || (e->stop_epoch != 0 && epoch > e->stop_epoch))
        e->stop_epoch = epoch;
    e->stopped = true;
    snprintf(e->reason, sizeof e->reason, "%s", reason != NULL && reason[0] ? reason : "STOP");
}

bool te_runs_stopped(te_runs *t, const char *run_id, int64_t epoch, int64_t now)
{
    if (run_id == NULL || run_id[0] == '\0')
        return false;
    expire(t, now);
    run_entry *e = find(t, run_id);
    return e != NULL && fenced(e, epoch);
}

size_t te_runs_count(const te_runs *t)
{
    return t->count;
}
