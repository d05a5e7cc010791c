/* stdio_adapter.c — the stdio transport (stdio_transport.c) behind the mcp_transport interface
 * (transport.h): spawning a server bare, as for operator-configured servers, or taking over a
 * child already started in a jail (user_stdio.c, for servers from an agent's config). */
#include "stdio_adapter.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "stdio_transport.h"

typedef struct stdio_t {
    mcp_transport base;
    mcp_stdio *io;
    mcp_transport_cbs cbs;
    void *arg;
    char broken[256];
    char desc[32];
} stdio_t;

static void on_line(const char *line, size_t len, void *arg)
{
    stdio_t *t = arg;
    if (len > 0)
        t->cbs.on_message(line, len, t->arg);
}

static void on_broken(const char *why, void *arg)
{
    stdio_t *t = arg;
    snprintf(t->broken, sizeof t->broken, "%s", why);
}

static void on_exit_cb(int wstatus, void *arg)
{
    stdio_t *t = arg;
    char how[400];
    int n;
    if (WIFEXITED(wstatus))
        n = snprintf(how, sizeof how, "exited (status %d)", WEXITSTATUS(wstatus));
    else if (WIFSIGNALED(wstatus))
        n = snprintf(how, sizeof how, "exited (signal %d)", WTERMSIG(wstatus));
    else
        n = snprintf(how, sizeof how, "exited (wait status %d)", wstatus);
    if (t->broken[0] && n > 0 && (size_t)n < sizeof how)
        snprintf(how + n, sizeof how - (size_t)n, " after %s", t->broken);
    t->cbs.on_closed(how, false, t->arg); /* last: the owner may free t */
}

static kx_err vt_send(mcp_transport *base, const char *text, size_t len)
{
    stdio_t *t = (stdio_t *)base;
    return mcp_stdio_send(t->io, text, len);
}

static void vt_version(mcp_transport *base, const char *v)
{
    (void)base;
    (void)v;
}

static void vt_close(mcp_transport *base)
{
    mcp_stdio_close_stdin(((stdio_t *)base)->io);
}

static void vt_kill(mcp_transport *base)
{
    mcp_stdio_kill(((stdio_t *)base)->io, SIGKILL);
}

static void vt_free(mcp_transport *base)
{
    stdio_t *t = (stdio_t *)base;
    mcp_stdio_free(t->io);
    free(t);
}

static const char *vt_describe(mcp_transport *base)
{
    return ((stdio_t *)base)->desc;
}

static const mcp_transport_vt stdio_vt = {vt_send, vt_version, vt_close,
                                          vt_kill, vt_free,    vt_describe};

static const mcp_stdio_cbs stdio_cbs = {.on_line = on_line,
                                        .on_broken = on_broken,
                                        .on_exit = on_exit_cb};

/* Starts t->io with argv/envp, or adopts proc when argv is NULL. */
static kx_err open_common(kx_loop *loop, const char *name, const char *const *argv,
                          const char *const *envp, kx_proc *proc, const mcp_transport_cbs *cbs,
                          void *arg, mcp_transport **out)
{
    stdio_t *t = calloc(1, sizeof *t);
    if (t == NULL) {
        if (proc != NULL) /* the child does not outlive a failure */
            mcp_stdio_discard(proc);
        return KX_ERR_NOMEM;
    }
    t->base.vt = &stdio_vt;
    t->cbs = *cbs;
    t->arg = arg;
    kx_err err = argv != NULL ? mcp_stdio_start(loop, name, argv, envp, &stdio_cbs, t, &t->io)
                              : mcp_stdio_adopt(loop, name, proc, &stdio_cbs, t, &t->io);
    if (err != KX_OK) {
        free(t);
        return err;
    }
    snprintf(t->desc, sizeof t->desc, "pid %d", (int)mcp_stdio_pid(t->io));
    *out = &t->base;
    return KX_OK;
}

kx_err mcp_stdio_open(kx_loop *loop, const char *name, const char *const *argv,
                      const char *const *envp, const mcp_transport_cbs *cbs, void *arg,
                      mcp_transport **out)
{
    return open_common(loop, name, argv, envp, NULL, cbs, arg, out);
}

kx_err mcp_stdio_open_proc(kx_loop *loop, const char *name, kx_proc *proc,
                           const mcp_transport_cbs *cbs, void *arg, mcp_transport **out)
{
    return open_common(loop, name, NULL, NULL, proc, cbs, arg, out);
}

/* Exposed for stdio_transport's signal API used by the session's shutdown escalation. */
void mcp_stdio_signal(mcp_transport *base, int sig)
{
    mcp_stdio_kill(((stdio_t *)base)->io, sig);
}
