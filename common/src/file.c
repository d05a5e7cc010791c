/* file.c — kx_file_read (see kx/file.h). */
#include "kx/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

kx_err kx_file_read(const char *path, size_t max, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return errno == ENOENT || errno == ENOTDIR ? KX_ERR_NOT_FOUND : KX_ERR_IO;
    struct stat st;
    kx_err err = KX_OK;
    if (fstat(fd, &st) != 0)
        err = KX_ERR_IO;
    else if (!S_ISREG(st.st_mode))
        err = KX_ERR_NOT_FOUND;
    else if ((unsigned long long)st.st_size > max)
        err = KX_ERR_INVALID;
    else if ((*out = malloc((size_t)st.st_size + 1)) == NULL)
        err = KX_ERR_NOMEM;
    while (err == KX_OK && *len < (size_t)st.st_size) { /* a file cut meanwhile: what is left */
        ssize_t r = read(fd, *out + *len, (size_t)st.st_size - *len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            err = KX_ERR_IO;
        else if (r == 0)
            break;
        else
            *len += (size_t)r;
    }
    int saved = errno;
    close(fd);
    errno = saved;
    if (err != KX_OK) {
        free(*out);
        *out = NULL;
        *len = 0;
        return err;
    }
    (*out)[*len] = '\0';
    return KX_OK;
}
