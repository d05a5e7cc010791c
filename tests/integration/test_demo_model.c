/* test_demo_model.c — the demo model's server is event-driven: thousands of slow streams
 * (`sleep`) held by a handful of threads and all answered; a client that leaves a `hang` is
 * noticed at once; KX_MODEL_CHUNK_MS paces streamed chunks; KX_MODEL_MAX_CONNECTIONS is the
 * connection limit. The binary runs alone (no stack): tests/fakes/demo-model. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "kx/fdlimit.h"
#include "kx/time.h"

#define SLOW_STREAMS 2000

typedef struct model {
    char *dir;
    char log[512];
    pid_t pid;
    uint16_t port;
} model;

static void model_start(model *m, const char *const *env)
{
    memset(m, 0, sizeof *m);
    m->dir = kx_th_tmpdir("kx-it-demo");
    assert_non_null(m->dir);
    snprintf(m->log, sizeof m->log, "%s/demo-model.log", m->dir);
    m->port = kx_th_free_port();
    char port[16];
    snprintf(port, sizeof port, "%u", (unsigned)m->port);
    const char *argv[] = {KX_BUILD_DIR "/tests/fakes/demo-model/kx-demo-model", "--port", port,
                          NULL};
    assert_int_equal(kx_th_spawn(argv, env, m->log, &m->pid), KX_OK);
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/healthz", (unsigned)m->port);
    assert_int_equal(kx_th_wait_http(url, 10000), KX_OK);
}

static void model_stop(model *m)
{
    assert_int_equal(kx_th_kill(m->pid), 0); /* a clean exit on SIGTERM, waits resumed */
    kx_th_rmrf(m->dir);
    free(m->dir);
}

/* "Threads:" of /proc/<pid>/status. */
static long proc_threads(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    long n = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "Threads:", 8) == 0)
            n = strtol(line + 8, NULL, 10);
    if (f)
        fclose(f);
    return n;
}

static bool log_has(const model *m, const char *needle)
{
    FILE *f = fopen(m->log, "re");
    if (f == NULL)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/* A connected socket with the chat request for script sent (blocking send, then non-blocking);
 * -1 if the connection failed. */
static int send_chat(uint16_t port, const char *script)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    char body[512], req[1024];
    int bl = snprintf(body, sizeof body,
                      "{\"stream\": true, \"messages\": [{\"role\": \"user\", \"content\": "
                      "\"%s\"}]}",
                      script);
    int rl = snprintf(req, sizeof req,
                      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                      "application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
                      bl, body);
    if (send(fd, req, (size_t)rl, MSG_NOSIGNAL) != rl) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* Reads every fd until EOF or deadline; counts the answers that end with "data: [DONE]". */
static int read_all(int *fds, int n, int64_t deadline_ms)
{
    struct pollfd *p = calloc((size_t)n, sizeof *p);
    char **got = calloc((size_t)n, sizeof *got);
    size_t *len = calloc((size_t)n, sizeof *len);
    assert_true(p && got && len);
    int open = 0, done = 0;
    for (int i = 0; i < n; i++) {
        p[i].fd = fds[i];
        p[i].events = POLLIN;
        open += fds[i] >= 0;
    }
    while (open > 0 && kx_mono_ms() < deadline_ms) {
        if (poll(p, (nfds_t)n, 200) <= 0)
            continue;
        for (int i = 0; i < n; i++) {
            if (p[i].fd < 0 || p[i].revents == 0)
                continue;
            char buf[4096];
            ssize_t r = read(p[i].fd, buf, sizeof buf);
            if (r > 0) {
                char *g = realloc(got[i], len[i] + (size_t)r + 1);
                assert_non_null(g);
                memcpy(g + len[i], buf, (size_t)r);
                len[i] += (size_t)r;
                g[len[i]] = '\0';
                got[i] = g;
                continue;
            }
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (got[i] && strstr(got[i], "data: [DONE]") != NULL)
                done++;
            close(p[i].fd);
            fds[i] = p[i].fd = -1;
            open--;
        }
    }
    for (int i = 0; i < n; i++)
        free(got[i]);
    free(got);
    free(len);
    free(p);
    return done;
}

/* 2 000 streams that each sleep 1.5 s before the first byte: all held at once by at most four
 * threads (the old server spent a thread per connection: 2 000), then all answered. */
static void test_thousands_of_slow_streams_few_threads(void **state)
{
    uint64_t have = 0;
    char why[512];
    assert_int_equal(kx_fd_limit_ensure(SLOW_STREAMS + 256, &have, why, sizeof why), KX_OK);
    model m;
    model_start(&m, NULL);
    int *fds = calloc(SLOW_STREAMS, sizeof *fds);
    assert_non_null(fds);
    int64_t t0 = kx_mono_ms();
    for (int i = 0; i < SLOW_STREAMS; i++) {
        fds[i] = send_chat(m.port, "sleep 1500\\nsay slow but sure");
        assert_true(fds[i] >= 0);
    }
    long threads = proc_threads(m.pid);
    int64_t sent_ms = kx_mono_ms() - t0;
    print_message("sent %d requests in %lld ms; the model has %ld threads\n", SLOW_STREAMS,
                  (long long)sent_ms, threads);
    if (sent_ms < 1200) /* still all inside their sleep: the count is what holds them */
        assert_true(threads >= 1 && threads <= 4);
    int done = read_all(fds, SLOW_STREAMS, kx_mono_ms() + 60000);
    int64_t all_ms = kx_mono_ms() - t0;
    print_message("%d of %d answered, all after %lld ms\n", done, SLOW_STREAMS, (long long)all_ms);
    assert_int_equal(done, SLOW_STREAMS);
    assert_true(all_ms >= 1500); /* nobody was answered before its sleep */
    free(fds);
    model_stop(&m);
}

/* A client that gives up on a `hang` (or a `sleep`) is noticed at once, not at the end. */
static void test_a_client_leaving_a_hang_is_noticed(void **state)
{
    const char *env[] = {"KX_LOG_LEVEL=info", NULL};
    model m;
    model_start(&m, env);
    int fd = send_chat(m.port, "hang\\nsay never");
    int fd2 = send_chat(m.port, "sleep 600000\\nsay much later");
    assert_true(fd >= 0 && fd2 >= 0);
    usleep(200 * 1000);
    close(fd);
    close(fd2);
    int64_t deadline = kx_mono_ms() + 3000;
    while (kx_mono_ms() < deadline &&
           !(log_has(&m, "`hang` held the request") && log_has(&m, "client left during sleep")))
        usleep(20 * 1000);
    assert_true(log_has(&m, "`hang` held the request"));
    assert_true(log_has(&m, "client left during sleep 600000 ms"));
    model_stop(&m);
}

/* KX_MODEL_CHUNK_MS=150: the chunks of one answer come 150 ms apart, the first at once. */
static void test_chunk_pacing(void **state)
{
    const char *env[] = {"KX_MODEL_CHUNK_MS=150", NULL};
    model m;
    model_start(&m, env);
    int64_t t0 = kx_mono_ms();
    /* 9 words: 3 text chunks, then finish, usage and [DONE]: 6 chunks, 5 pauses */
    int fd = send_chat(m.port, "say one two three four five six seven eight nine");
    assert_true(fd >= 0);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    assert_true(poll(&p, 1, 5000) == 1);
    int64_t first_ms = kx_mono_ms() - t0;
    int done = read_all(&fd, 1, kx_mono_ms() + 10000);
    int64_t all_ms = kx_mono_ms() - t0;
    print_message("first bytes after %lld ms, the whole answer after %lld ms\n",
                  (long long)first_ms, (long long)all_ms);
    assert_int_equal(done, 1);
    assert_true(first_ms < 140);
    assert_true(all_ms >= 5 * 150);
    model_stop(&m);
}

/* KX_MODEL_MAX_CONNECTIONS=16: a 17th connection is refused while 16 hang; once they are gone,
 * the model answers again. */
static void test_connection_limit(void **state)
{
    const char *env[] = {"KX_MODEL_MAX_CONNECTIONS=16", NULL};
    model m;
    model_start(&m, env);
    int fds[16];
    for (int i = 0; i < 16; i++) {
        fds[i] = send_chat(m.port, "hang\\nsay never");
        assert_true(fds[i] >= 0);
    }
    usleep(300 * 1000);
    int extra = send_chat(m.port, "say over the limit");
    int answered = extra >= 0 ? read_all(&extra, 1, kx_mono_ms() + 3000) : 0;
    assert_int_equal(answered, 0);
    for (int i = 0; i < 16; i++)
        close(fds[i]);
    usleep(300 * 1000);
    int again = send_chat(m.port, "say under the limit");
    assert_true(again >= 0);
    assert_int_equal(read_all(&again, 1, kx_mono_ms() + 5000), 1);
    model_stop(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thousands_of_slow_streams_few_threads),
        cmocka_unit_test(test_a_client_leaving_a_hang_is_noticed),
        cmocka_unit_test(test_chunk_pacing),
        cmocka_unit_test(test_connection_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
