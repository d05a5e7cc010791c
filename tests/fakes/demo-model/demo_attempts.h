/* demo_attempts.h — how many times each step of each conversation has been asked for.
 *
 * `fail <status> <n>` and `hang <n>` act on the first n attempts of a step, so the model counts
 * attempts per key (demo_conv_key: first user message + script message + step index). The table
 * lives in memory, behind a mutex (the HTTP server runs a thread per connection). It holds at
 * most DEMO_ATTEMPTS_MAX keys; when full it is emptied (counting starts over) rather than grow
 * without bound — tests never come near that.
 *
 * Ownership: demo_attempts_new returns a table the caller frees with demo_attempts_free. */
#ifndef KX_DEMO_ATTEMPTS_H
#define KX_DEMO_ATTEMPTS_H

#include <stdint.h>

#define DEMO_ATTEMPTS_MAX 65536

typedef struct demo_attempts demo_attempts;

demo_attempts *demo_attempts_new(void); /* NULL on OOM */
void demo_attempts_free(demo_attempts *a);
/* Counts one more attempt for key and returns its number (1 for the first). Thread-safe. */
int demo_attempts_next(demo_attempts *a, uint64_t key);

#endif
