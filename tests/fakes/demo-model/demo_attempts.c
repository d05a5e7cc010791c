/* demo_attempts.c — the attempt counter (see demo_attempts.h): an open-addressing hash table
 * of (key, count) with linear probing, twice as large as DEMO_ATTEMPTS_MAX so probes stay short.
 * Key 0 marks an empty slot; a real key 0 is stored as 1 (a harmless merge). */
#include "demo_attempts.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS (DEMO_ATTEMPTS_MAX * 2) /* a power of two */

typedef struct slot {
    uint64_t key;
    int count;
} slot;

struct demo_attempts {
    pthread_mutex_t mu;
    size_t used;
    slot *slots;
};

demo_attempts *demo_attempts_new(void)
{
    demo_attempts *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    a->slots = calloc(SLOTS, sizeof *a->slots);
    if (a->slots == NULL || pthread_mutex_init(&a->mu, NULL) != 0) {
        free(a->slots);
        free(a);
        return NULL;
    }
    return a;
}

void demo_attempts_free(demo_attempts *a)
{
    if (a == NULL)
        return;
    pthread_mutex_destroy(&a->mu);
    free(a->slots);
    free(a);
}

int demo_attempts_next(demo_attempts *a, uint64_t key)
{
    if (key == 0)
        key = 1;
    pthread_mutex_lock(&a->mu);
    if (a->used >= DEMO_ATTEMPTS_MAX) {
        memset(a->slots, 0, SLOTS * sizeof *a->slots);
        a->used = 0;
    }
    size_t i = (size_t)(key & (SLOTS - 1));
    while (a->slots[i].key != 0 && a->slots[i].key != key)
        i = (i + 1) & (SLOTS - 1);
    if (a->slots[i].key == 0) {
        a->slots[i].key = key;
        a->used++;
    }
    int n = ++a->slots[i].count;
    pthread_mutex_unlock(&a->mu);
    return n;
}
