/* image_fetch.h — the bytes of a see_image image, read from the project's sandbox through the
 * sandbox-broker's kx.sandbox.files READ, chunk after chunk (each reply fits the bus), on the
 * runner's loop (kx_bus_async): the loop never waits. At most CONTEXT_IMAGE_MAX_BYTES; a file
 * that grew past it, or a read error, ends the fetch with a reason.
 *
 * Ownership: image_fetch_start allocates the fetch; it frees itself after calling done (the
 * data passed to done is the callback's to free), or in image_fetch_cancel (done is then never
 * called). */
#ifndef RUNNER_IMAGE_FETCH_H
#define RUNNER_IMAGE_FETCH_H

#include <stddef.h>
#include "context.h"
#include "kx/bus.h"

typedef struct image_fetch image_fetch;
/* err KX_OK: data/len hold the file (malloc'd, the callback's); else why says what failed. */
typedef void (*image_fetch_cb)(void *arg, kx_err err, unsigned char *data, size_t len,
                               const char *why);

/* Starts reading ref->file_path of project_id; each request carries meta (account, trace) and
 * ends by deadline. NULL when it could not start (out of memory, the bus). */
image_fetch *image_fetch_start(kx_bus_async *ab, const char *project_id, const kx_bus_meta *meta,
                               kx_deadline deadline, const context_image_ref *ref,
                               image_fetch_cb done, void *arg);
void image_fetch_cancel(image_fetch *f);

#endif
