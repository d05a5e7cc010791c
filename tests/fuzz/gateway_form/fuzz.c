/* fuzz.c — the gateway's form bodies (form.c over libmicrohttpd's post processor, body.c's
 * gw_form_bool / gw_form_text): what POST /api/agent/initiate receives as multipart/form-data
 * or application/x-www-form-urlencoded.
 *
 * The post processor needs a real connection (it reads the Content-Type header from it), so
 * the target runs a libmicrohttpd daemon on 127.0.0.1 (a free port) and sends each input as
 * one HTTP request over a socket: the first line of the input is the Content-Type, the rest
 * the body. The handler does what the gateway does: gw_form_new, gw_form_feed for every piece
 * libmicrohttpd hands over, gw_form_finish, then reads the known fields.
 * Properties: a refused form says why; a field read as text is UTF-8 without NUL; a field
 * read as a boolean is one of the accepted spellings or a 400 naming it; the files[] parts
 * (initiate_files.c): at most GW_FORM_MAX_UPLOADS kept, each one's safe name (gw_upload_name)
 * is one non-empty path component of valid UTF-8 without '/', '\', control characters or
 * "..", not starting with a dot, within GW_UPLOAD_NAME_MAX; a plan's names are unique and
 * under /workspace/uploads/, or it is refused with a 400/413 that says why; the prompt with
 * its lines is UTF-8.
 * Note: libmicrohttpd comes from Debian and is not instrumented; coverage guidance sees the
 * gateway's code, ASan checks every access our code makes and libc calls made for it. */
#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "body.h"
#include "kx/utf8.h"
#include "form.h"
#include "initiate_files.h"
#include "fuzz_util.h"
#include "reply.h"
#include "text.h"

typedef struct req_state {
    gw_form *form;
    bool bad;
} req_state;

static struct MHD_Daemon *daemon_;
static uint16_t port_;

static void check_refusal(gw_reply *r, const char *field)
{
    FUZZ_CHECK(r->status == MHD_HTTP_BAD_REQUEST && r->body != NULL);
    FUZZ_CHECK(strstr(r->body, field) != NULL);
    gw_reply_free(r);
    memset(r, 0, sizeof *r);
}

static void read_fields(const gw_form *f)
{
    static const char *const texts[] = {"prompt", "model_name", "reasoning_effort", "agent_id",
                                        "name"};
    static const char *const bools[] = {"enable_thinking", "stream", "enable_context_manager"};
    gw_reply r = {0};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        const char *v = NULL;
        if (!gw_form_text(f, texts[i], i > 0, &v, &r)) {
            check_refusal(&r, texts[i]);
            continue;
        }
        if (v != NULL) {
            size_t len = 0;
            FUZZ_CHECK(gw_form_get(f, texts[i], &len) == v);
            FUZZ_CHECK(strlen(v) == len && kx_utf8_valid(v, len));
            char *name = gw_project_name(v, 30);
            FUZZ_CHECK(name != NULL && kx_utf8_valid(name, strlen(name)));
            free(name);
        }
    }
    for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++) {
        bool b;
        if (!gw_form_bool(f, bools[i], false, &b, &r))
            check_refusal(&r, bools[i]);
    }
    FUZZ_CHECK(gw_form_get(f, "is_agent_builder", NULL) == NULL); /* not a field it keeps */
}

static void check_name(const char *name)
{
    size_t len = strlen(name);
    FUZZ_CHECK(len > 0 && kx_utf8_valid(name, len));
    FUZZ_CHECK(strchr(name, '/') == NULL && strchr(name, '\\') == NULL);
    FUZZ_CHECK(strstr(name, "..") == NULL && name[0] != '.');
    for (size_t i = 0; i < len; i++) {
        const unsigned char *c = (const unsigned char *)name + i;
        FUZZ_CHECK(c[0] >= 0x20 && c[0] != 0x7f);
        FUZZ_CHECK(!(c[0] == 0xc2 && c[1] >= 0x80 && c[1] < 0xa0)); /* C1 */
    }
}

static void read_uploads(gw_form *f)
{
    const gw_form_upload *up = NULL;
    bool too_many = false;
    size_t n = gw_form_uploads(f, &up, &too_many);
    FUZZ_CHECK(n <= GW_FORM_MAX_UPLOADS && (n == 0 || up != NULL));
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(up[i].filename != NULL && up[i].data != NULL);
        char name[GW_UPLOAD_NAME_MAX + 1];
        gw_upload_name(up[i].filename, name);
        check_name(name);
        FUZZ_CHECK(strlen(name) <= GW_UPLOAD_NAME_MAX);
    }
    gw_upload_plan *plan = calloc(1, sizeof *plan);
    FUZZ_CHECK(plan != NULL);
    gw_reply r = {0};
    if (!gw_upload_plan_make(f, 10 << 20, 50 << 20, plan, &r)) {
        FUZZ_CHECK((r.status == MHD_HTTP_BAD_REQUEST || r.status == MHD_HTTP_CONTENT_TOO_LARGE) &&
                   r.body != NULL && strstr(r.body, "file") != NULL);
        gw_reply_free(&r);
        free(plan);
        return;
    }
    FUZZ_CHECK(plan->n == n && !too_many);
    for (size_t i = 0; i < plan->n; i++) {
        check_name(plan->files[i].name);
        FUZZ_CHECK(
            strncmp(plan->files[i].path, GW_UPLOAD_DIR "/", strlen(GW_UPLOAD_DIR) + 1) == 0 &&
            strcmp(plan->files[i].path + strlen(GW_UPLOAD_DIR) + 1, plan->files[i].name) == 0);
        for (size_t k = 0; k < i; k++)
            FUZZ_CHECK(strcmp(plan->files[i].name, plan->files[k].name) != 0);
    }
    char *prompt = gw_upload_prompt("p", plan);
    FUZZ_CHECK(prompt != NULL && kx_utf8_valid(prompt, strlen(prompt)));
    FUZZ_CHECK(plan->n == 0 || strstr(prompt, "\n\n[Uploaded File: " GW_UPLOAD_DIR "/") != NULL);
    free(prompt);
    free(plan);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    req_state *st = *con_cls;
    if (st == NULL) {
        st = calloc(1, sizeof *st);
        FUZZ_CHECK(st != NULL);
        *con_cls = st;
        const char *ct =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (gw_form_content_type(ct)) {
            const char *why = NULL;
            st->form = gw_form_new(conn, &why);
            FUZZ_CHECK(st->form != NULL || (why != NULL && why[0] != '\0'));
        }
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (st->form != NULL && !st->bad && !gw_form_feed(st->form, upload_data, *upload_size))
            st->bad = true;
        *upload_size = 0;
        return MHD_YES;
    }
    if (st->form != NULL && !st->bad && gw_form_finish(st->form)) {
        read_fields(st->form);
        read_uploads(st->form);
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    req_state *st = *con_cls;
    if (st == NULL)
        return;
    gw_form_free(st->form);
    free(st);
    *con_cls = NULL;
}

static void quiet(void *cls, const char *fmt, va_list ap)
{
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    daemon_ =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                         on_request, NULL, MHD_OPTION_EXTERNAL_LOGGER, quiet, NULL,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED,
                         on_completed, NULL, MHD_OPTION_CONNECTION_TIMEOUT, 5u, MHD_OPTION_END);
    FUZZ_CHECK(daemon_ != NULL);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT);
    FUZZ_CHECK(info != NULL && info->port != 0);
    port_ = info->port;
    return 0;
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the server may close early on a body it refuses */
        p += w;
        n -= (size_t)w;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    if (nl == NULL)
        return 0;
    size_t ctlen = (size_t)(nl - data);
    if (ctlen > 512)
        return 0;
    char ct[513];
    for (size_t i = 0; i < ctlen; i++) /* a header value cannot hold CR, LF or NUL */
        ct[i] = (data[i] == '\r' || data[i] == '\0') ? ' ' : (char)data[i];
    ct[ctlen] = '\0';
    if (!gw_form_content_type(ct))
        return 0; /* the gateway refuses other types before any parsing */
    const char *body = (const char *)nl + 1;
    size_t blen = size - ctlen - 1;

    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(port_);
    int fd = -1;
    for (int attempt = 0; fd < 0 && attempt < 200; attempt++) {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        FUZZ_CHECK(fd >= 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            close(fd); /* e.g. no free local port for a moment */
            fd = -1;
            usleep(10 * 1000);
        }
    }
    FUZZ_CHECK(fd >= 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    /* We close first, with a reset: no TIME_WAIT is left behind (thousands of requests a
     * second would otherwise run out of local ports). */
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    char head[1024];
    int hn = snprintf(head, sizeof head,
                      "POST /api/agent/initiate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Content-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                      ct, blen);
    send_all(fd, head, (size_t)hn);
    send_all(fd, body, blen);
    /* The answer has no body: read up to the end of its head (or until the server closes). */
    char buf[4096];
    size_t got = 0;
    for (;;) {
        ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
        buf[got] = '\0';
        if (strstr(buf, "\r\n\r\n") != NULL || got == sizeof buf - 1)
            break;
    }
    close(fd);
    return 0;
}
