/* heap.h — the agent-runner's malloc settings: the heap's free top is kept, not handed back to
 * the kernel after every burst of frees.
 *
 * glibc gives the top of a heap back (brk shrinks, or a thread arena's heap is cut) once a
 * free leaves more than M_TRIM_THRESHOLD free there (128 KiB, raised only as large mmapped
 * blocks are freed). A runner's turn frees its LLM call (the request body, libcurl's buffers)
 * and its rows together, so under load the main heap shrank and grew again all the time: a
 * brk(2) each way and a page fault for every page touched again. heap_tune fixes both
 * thresholds: frees keep up to HEAP_TRIM_THRESHOLD at the top, and blocks up to
 * HEAP_MMAP_THRESHOLD come from the heap (reused), not from an mmap(2)/munmap(2) each. */
#ifndef KX_RUNNER_HEAP_H
#define KX_RUNNER_HEAP_H

#include <stdbool.h>

#define HEAP_TRIM_THRESHOLD (32u << 20) /* free top kept per heap (bytes) */
#define HEAP_MMAP_THRESHOLD (1u << 20)  /* blocks from mmap only above this (bytes) */

/* Sets the thresholds for the whole process (every thread's arena); call once, early, before
 * the threads start. False if glibc refused one (the defaults stay; nothing else changes). */
bool heap_tune(void);

#endif
