/* capture.h — one output stream of a command (stdout or stderr), kept within a fixed budget so
 * that the reply always fits the bus: the first `head` bytes and the last `tail` bytes are kept
 * in memory; when the stream is longer, everything (up to KX_SANDBOX_SPILL_MAX bytes) is also
 * written to a file in the sandbox's workspace, and the text given back says how much was cut
 * and where the full output is.
 *
 * Memory is bounded by head + tail whatever the command prints. Loop thread only.
 * Ownership: the struct is the caller's; sb_capture_free releases what it holds. */
#ifndef SB_CAPTURE_H
#define SB_CAPTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kx/buf.h"

/* Opens the spill file for a stream: returns a writable fd (or -1) and fills visible with the
 * path the sandbox sees. */
typedef int (*sb_spill_open_fn)(void *arg, const char *stream, char *visible, size_t vlen);

typedef struct sb_capture {
    const char *stream; /* "stdout" / "stderr" (static) */
    size_t head_max, tail_max;
    kx_buf head;
    char *tail;                /* ring of tail_max bytes, allocated on first overflow */
    size_t tail_len, tail_pos; /* bytes in the ring, next write position */
    uint64_t total;            /* bytes the stream produced */
    sb_spill_open_fn spill_open;
    void *spill_arg;
    int spill_fd; /* -1 until the stream overflows */
    bool spill_tried;
    uint64_t spill_max, spilled;
    char spill_path[256]; /* as the sandbox sees it */
} sb_capture;

void sb_capture_init(sb_capture *c, const char *stream, size_t keep, uint64_t spill_max,
                     sb_spill_open_fn spill_open, void *spill_arg);
void sb_capture_add(sb_capture *c, const char *data, size_t n);
/* True when the stream was longer than what is kept. */
bool sb_capture_cut(const sb_capture *c);
/* The text to reply with (malloc'd, NOT yet UTF-8 repaired, *len set): the whole stream, or
 * head + a note + tail. NULL when out of memory. */
char *sb_capture_text(const sb_capture *c, size_t *len);
void sb_capture_free(sb_capture *c);

#endif
