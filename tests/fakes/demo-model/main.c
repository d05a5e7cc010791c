/* main.c — kx-demo-model: the deterministic OpenAI-compatible model that Kortix in C uses when
 * no provider key is set, so the stack runs offline and tests can script an agent turn by turn.
 *
 *   kx-demo-model [--port N]
 *
 * Configuration: KX_BIND_ADDR (127.0.0.1), KX_MODEL_PORT (8089; --port overrides, 0 = any free
 * port), KX_MODEL_MAX_CONNECTIONS (16384: libmicrohttpd's connection limit; RLIMIT_NOFILE is
 * raised to match, or the limit lowered to what the descriptors allow, with a warning),
 * KX_MODEL_THREADS (1: epoll threads), KX_MODEL_CHUNK_MS (0: pause between streamed chunks, for
 * slow, realistic streams), KX_LOG_LEVEL. The script language is described in demo_script.h,
 * how a request's body is read in demo_body.h, how it picks its step in demo_conv.h, the wire
 * format in demo_turn.h, the server in server.h.
 * It runs until SIGTERM or SIGINT. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kx/config.h"
#include "kx/fdlimit.h"
#include "kx/log.h"
#include "server.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kx-demo-model [--port N]\n"
            "  Deterministic OpenAI-compatible model for Kortix in C.\n"
            "  Environment: KX_BIND_ADDR (127.0.0.1), KX_MODEL_PORT (8089),\n"
            "  KX_MODEL_MAX_CONNECTIONS (16384), KX_MODEL_THREADS (1), KX_MODEL_CHUNK_MS (0),\n"
            "  KX_LOG_LEVEL.\n");
}

/* --port N (or --port=N) into *port; false on a bad command line (explained on stderr). */
static bool parse_args(int argc, char **argv, uint16_t *port, bool *help)
{
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            *help = true;
            return true;
        } else if (strcmp(argv[i], "--port") == 0) {
            if (i + 1 == argc) {
                fprintf(stderr, "kx-demo-model: --port needs a value\n");
                return false;
            }
            v = argv[++i];
        } else if (strncmp(argv[i], "--port=", 7) == 0) {
            v = argv[i] + 7;
        } else {
            fprintf(stderr, "kx-demo-model: unknown argument \"%s\"\n", argv[i]);
            return false;
        }
        char *end = NULL;
        errno = 0;
        long n = strtol(v, &end, 10);
        if (errno != 0 || end == v || *end != '\0' || n < 0 || n > 65535) {
            fprintf(stderr, "kx-demo-model: --port \"%s\" is not a port in [0, 65535]\n", v);
            return false;
        }
        *port = (uint16_t)n;
    }
    return true;
}

int main(int argc, char **argv)
{
    char instance[64];
    snprintf(instance, sizeof instance, "demo-model-%ld", (long)getpid());
    kx_log_init("demo-model", instance);

    uint16_t port;
    if (kx_env_port("KX_MODEL_PORT", 8089, &port) != KX_OK)
        return 2;
    bool help = false;
    if (!parse_args(argc, argv, &port, &help)) {
        usage(stderr);
        return 2;
    }
    if (help) {
        usage(stdout);
        return 0;
    }
    const char *bind_addr = kx_env_str("KX_BIND_ADDR", "127.0.0.1");
    int64_t max_conns, threads, chunk_ms;
    if (kx_env_int("KX_MODEL_MAX_CONNECTIONS", 16384, 16, 1000000, &max_conns) != KX_OK ||
        kx_env_int("KX_MODEL_THREADS", 1, 1, 64, &threads) != KX_OK ||
        kx_env_int("KX_MODEL_CHUNK_MS", 0, 0, 60000, &chunk_ms) != KX_OK)
        return 2;
    /* one descriptor per connection, plus the listener, the epoll sets, the waiter, stdio */
    const int64_t spare = 64;
    char why[512];
    uint64_t have = 0;
    if (kx_fd_limit_ensure((uint64_t)(max_conns + spare), &have, why, sizeof why) != KX_OK) {
        int64_t fit = (int64_t)have > spare + 16 ? (int64_t)have - spare : 16;
        kx_warn("demo-model: %s; serving at most %lld connections instead of %lld", why,
                (long long)fit, (long long)max_conns);
        max_conns = fit;
    }
    demo_server_opts opts = {.max_connections = (unsigned)max_conns,
                             .threads = (unsigned)threads,
                             .chunk_ms = chunk_ms};

    /* Block the stop signals before any thread starts (threads inherit the mask), then wait
     * for them with sigwait on this thread. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    demo_server *srv = demo_server_start(bind_addr, port, &opts);
    if (srv == NULL)
        return 1;
    kx_info("demo-model listening on http://%s:%u/v1 (model kortix/demo): up to %lld "
            "connections, %lld thread(s), chunk pause %lld ms",
            bind_addr, (unsigned)demo_server_port(srv), (long long)max_conns, (long long)threads,
            (long long)chunk_ms);

    int sig = 0;
    if (sigwait(&stop, &sig) != 0)
        kx_error("sigwait failed; stopping");
    kx_info("demo-model: signal %d, stopping", sig);
    demo_server_stop(srv);
    return 0;
}
