/* kx/file.h — a whole regular file read into memory (time zone files, migrations).
 *
 * Ownership: *out is malloc'd and the caller's; it is NUL-terminated after its *len bytes, so
 * a text file is a C string. */
#ifndef KX_FILE_H
#define KX_FILE_H

#include <stddef.h>

#include "kx/err.h"

/* The regular file at path, at most max bytes, into *out and *len. KX_ERR_NOT_FOUND: no such
 * file, or not a regular file (a directory); KX_ERR_INVALID: larger than max; KX_ERR_IO: it
 * could not be opened or read (errno says why); KX_ERR_NOMEM. */
kx_err kx_file_read(const char *path, size_t max, char **out, size_t *len);

#endif
