/* ubsan_log_path.c — sanitizer builds only (KX_SANITIZE=ON): UBSan reports go to the file
 * UBSAN_OPTIONS' log_path names, like ASan's do.
 *
 * gcc links -fsanitize=address,undefined against two runtimes, libasan and libubsan, each with
 * its own copy of the report-file state. libubsan sets its log path by calling
 * __sanitizer_set_report_path, but that call resolves to libasan's definition (libasan comes
 * first in the link order and exports the same symbol), so UBSan reports always went to stderr
 * and log_path was silently ignored (checked on Debian 12, gcc 12). This constructor asks
 * libubsan itself (dlsym on its own handle) to set its path. .ci/run's asan stage then fails on
 * any report file, whether or not a test looked at the process's exit status.
 *
 * Linked into every executable of a sanitizer build (top-level CMakeLists.txt); it exports
 * nothing. Without UBSAN_OPTIONS log_path, or without libubsan loaded, it does nothing. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The value of log_path in a sanitizer option string ("a=1:log_path=/x/y:b=2"; ':' ',' and
 * white space separate options, as the sanitizers' own parser takes them). */
static int log_path_of(const char *opts, char *out, size_t cap)
{
    const char *p = opts;
    int found = 0;
    while (p != NULL && *p != '\0') {
        p += strspn(p, ": ,\t\n");
        size_t len = strcspn(p, ": ,\t\n");
        if (len > 9 && strncmp(p, "log_path=", 9) == 0 && len - 9 < cap) {
            memcpy(out, p + 9, len - 9);
            out[len - 9] = '\0';
            found = 1; /* the last one wins, as for the sanitizers */
        }
        p += len;
    }
    return found;
}

__attribute__((constructor)) static void ubsan_log_path(void)
{
    const char *opts = getenv("UBSAN_OPTIONS");
    char path[4096];
    if (opts == NULL || !log_path_of(opts, path, sizeof path))
        return;
    void *ubsan = dlopen("libubsan.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (ubsan == NULL)
        return;
    void (*set_path)(const char *) = NULL;
    void *sym = dlsym(ubsan, "__sanitizer_set_report_path");
    memcpy(&set_path, &sym, sizeof set_path);
    if (set_path != NULL)
        set_path(path);
    dlclose(ubsan);
}
