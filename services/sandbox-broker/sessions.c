/* sessions.c — Kortix's tmux-session tools over the bus (docs/subjects.md):
 *   kx.sandbox.output     (queue group "sandbox-broker")  check_command_output: a session's
 *                         log from an offset, within the bus's max_payload; kill optional
 *   kx.sandbox.terminate  (no queue group: every broker kills what it runs)  terminate_command
 *   kx.sandbox.list       (queue group "sandbox-broker")  list_commands: what runs here
 * A session is the set of commands started with its name in a project; background commands
 * write to <root>/<project>/.kx/sessions/<session>.log (exec.c). Loop thread only. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker.h"
#include "fleet.h"
#include "exec.h"
#include "kx/log.h"
#include "kx/pb.h"
#include "kx/utf8.h"
#include "kx/uuid.h"
#include "sandbox_path.h"

#define LIST_MAX 256 /* commands listed per reply (each well under 1 KiB) */

static Kx__V1__Error *set_error(Kx__V1__Error *e, kx_err err, const char *why)
{
    e->code = (char *)kx_err_code(err);
    e->message = (char *)why;
    return e;
}

static void respond(sb_broker *b, natsMsg *msg, const ProtobufCMessage *rep)
{
    if (natsMsg_GetReply(msg) != NULL) {
        kx_err err = kx_bus_respond_pb(b->svc->bus, msg, rep);
        if (err != KX_OK)
            kx_warn("sandbox: could not answer on %s: %s", natsMsg_GetSubject(msg),
                    kx_err_str(err));
    }
    natsMsg_Destroy(msg);
}

/* Checks the deadline header, the project id and (when need_session) the session name. */
static bool valid(natsMsg *msg, const char *project, const char *session, bool need_session,
                  char *why, size_t whylen)
{
    kx_bus_meta meta;
    memset(&meta, 0, sizeof meta);
    if (kx_bus_meta_read(msg, &meta) != KX_OK || meta.deadline == KX_NO_DEADLINE) {
        snprintf(why, whylen, "the Kx-Deadline header (absolute unix ms) is required");
        return false;
    }
    if (!kx_uuid_valid(project)) {
        snprintf(why, whylen, "project_id '%.64s' is not a valid UUID", project ? project : "");
        return false;
    }
    if (need_session && !sb_session_name_valid(session)) {
        snprintf(why, whylen, "session_name '%.80s' is not valid: use 1..%d of A-Z a-z 0-9 _ . -",
                 session ? session : "", SB_SESSION_MAX);
        return false;
    }
    return true;
}

/* Kills every running command of (project, session) here; returns how many. */
static int terminate(sb_broker *b, const char *project, const char *session)
{
    int n = 0;
    for (sb_exec *e = b->execs; e != NULL; e = sb_exec_next(e)) {
        if (strcasecmp(sb_exec_project(e), project) == 0 &&
            strcmp(sb_exec_session(e), session) == 0 && sb_exec_kill(e))
            n++;
    }
    if (n > 0)
        kx_info("sandbox: project %s: session %s terminated (%d command(s))", project, session, n);
    return n;
}

static bool session_running(sb_broker *b, const char *project, const char *session)
{
    for (sb_exec *e = b->execs; e != NULL; e = sb_exec_next(e)) {
        if (strcasecmp(sb_exec_project(e), project) == 0 &&
            strcmp(sb_exec_session(e), session) == 0 && sb_exec_running(e))
            return true;
    }
    return false;
}

static void on_output(natsMsg *msg, void *arg)
{
    sb_broker *b = arg;
    Kx__V1__SandboxOutputReply rep = KX__V1__SANDBOX_OUTPUT_REPLY__INIT;
    Kx__V1__Error e = KX__V1__ERROR__INIT;
    char why[512];
    Kx__V1__SandboxOutputRequest *rq =
        kx_pb_unpack(&kx__v1__sandbox_output_request__descriptor, natsMsg_GetData(msg),
                     (size_t)natsMsg_GetDataLength(msg));
    if (rq == NULL) {
        rep.error = set_error(&e, KX_ERR_INVALID, "request is not a valid SandboxOutputRequest");
        respond(b, msg, &rep.base);
        return;
    }
    rep.session_name = rq->session_name;
    char *text = NULL;
    if (!valid(msg, rq->project_id, rq->session_name, true, why, sizeof why) || rq->offset < 0 ||
        rq->max_bytes < 0) {
        if (rq->offset < 0 || rq->max_bytes < 0)
            snprintf(why, sizeof why, "offset and max_bytes must not be negative");
        rep.error = set_error(&e, KX_ERR_INVALID, why);
        goto done;
    }
    if (sb_fleet_route(b, msg, rq->project_id)) { /* fleet.c: its owner answers */
        kx_pb_free(rq);
        return;
    }
    char dir[4096], path[4200];
    if (sb_sessions_dir(b->cfg.root, rq->project_id, dir, sizeof dir) != KX_OK) {
        rep.error = set_error(&e, KX_ERR_INTERNAL, "sandbox root path is too long");
        goto done;
    }
    snprintf(path, sizeof path, "%s/%s.log", dir, rq->session_name);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, sizeof why,
                 "session '%s' has no output in project %s (no background "
                 "command was started with that name)",
                 rq->session_name, rq->project_id);
        rep.error = set_error(&e, errno == ENOENT ? KX_ERR_NOT_FOUND : KX_ERR_INTERNAL, why);
        goto done;
    }
    struct stat st;
    size_t budget = b->max_reply > 32768 ? (b->max_reply - 16384) / 3 : 4096;
    if (rq->max_bytes > 0 && (size_t)rq->max_bytes < budget)
        budget = (size_t)rq->max_bytes;
    int64_t size = fstat(fd, &st) == 0 ? (int64_t)st.st_size : 0;
    int64_t off = rq->offset < size ? rq->offset : size;
    size_t want = (size_t)(size - off) < budget ? (size_t)(size - off) : budget;
    char *raw = malloc(want + 1);
    ssize_t got = raw != NULL ? pread(fd, raw, want, off) : -1;
    close(fd);
    if (got < 0) {
        free(raw);
        rep.error = set_error(&e, KX_ERR_INTERNAL, "could not read the session log");
        goto done;
    }
    text = kx_utf8_sanitize(raw, (size_t)got, NULL);
    free(raw);
    rep.output = text ? text : "";
    rep.next_offset = off + got;
    rep.size = size;
    if (rq->kill)
        rep.killed = terminate(b, rq->project_id, rq->session_name);
    rep.running = session_running(b, rq->project_id, rq->session_name) && !rq->kill;
done:
    respond(b, msg, &rep.base);
    free(text);
    kx_pb_free(rq);
}

static void on_terminate(natsMsg *msg, void *arg)
{
    sb_broker *b = arg;
    Kx__V1__SandboxTerminateReply rep = KX__V1__SANDBOX_TERMINATE_REPLY__INIT;
    Kx__V1__Error e = KX__V1__ERROR__INIT;
    char why[512];
    Kx__V1__SandboxTerminateRequest *rq =
        kx_pb_unpack(&kx__v1__sandbox_terminate_request__descriptor, natsMsg_GetData(msg),
                     (size_t)natsMsg_GetDataLength(msg));
    if (rq == NULL)
        rep.error =
            set_error(&e, KX_ERR_INVALID, "request is not a valid SandboxTerminateRequest");
    else if (!valid(msg, rq->project_id, rq->session_name, true, why, sizeof why))
        rep.error = set_error(&e, KX_ERR_INVALID, why);
    else
        rep.killed = terminate(b, rq->project_id, rq->session_name);
    respond(b, msg, &rep.base);
    kx_pb_free(rq);
}

static void on_list(natsMsg *msg, void *arg)
{
    sb_broker *b = arg;
    Kx__V1__SandboxListReply rep = KX__V1__SANDBOX_LIST_REPLY__INIT;
    Kx__V1__Error e = KX__V1__ERROR__INIT;
    char why[512];
    static Kx__V1__SandboxCommand cmds[LIST_MAX];
    static Kx__V1__SandboxCommand *ptrs[LIST_MAX];
    Kx__V1__SandboxListRequest *rq =
        kx_pb_unpack(&kx__v1__sandbox_list_request__descriptor, natsMsg_GetData(msg),
                     (size_t)natsMsg_GetDataLength(msg));
    if (rq == NULL) {
        rep.error = set_error(&e, KX_ERR_INVALID, "request is not a valid SandboxListRequest");
    } else if (!valid(msg, rq->project_id, NULL, false, why, sizeof why)) {
        rep.error = set_error(&e, KX_ERR_INVALID, why);
    } else if (sb_fleet_route(b, msg, rq->project_id)) { /* fleet.c: its owner answers */
        kx_pb_free(rq);
        return;
    } else {
        size_t n = 0;
        for (sb_exec *x = b->execs; x != NULL && n < LIST_MAX; x = sb_exec_next(x)) {
            if (strcasecmp(sb_exec_project(x), rq->project_id) != 0 || !sb_exec_running(x))
                continue;
            kx__v1__sandbox_command__init(&cmds[n]);
            sb_exec_describe(x, &cmds[n]);
            ptrs[n] = &cmds[n];
            n++;
        }
        rep.commands = ptrs;
        rep.n_commands = n;
    }
    respond(b, msg, &rep.base);
    kx_pb_free(rq);
}

kx_err sb_sessions_start(sb_broker *b)
{
    static const struct {
        const char *subject, *queue;
        kx_bus_msg_cb cb;
    } subs[] = {
        {KX_SUBJ_SANDBOX_OUTPUT, "sandbox-broker", on_output},
        {KX_SUBJ_SANDBOX_TERMINATE, NULL, on_terminate},
        {KX_SUBJ_SANDBOX_LIST, "sandbox-broker", on_list},
    };
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        kx_err err = subs[i].queue != NULL
            ? sb_fleet_subscribe(b, subs[i].subject, subs[i].queue, subs[i].cb, b,
                                 &b->session_subs[i])
            : kx_bus_subscribe_loop(b->svc->bus, b->svc->loop, subs[i].subject, NULL, subs[i].cb,
                                    b, &b->session_subs[i]);
        if (err != KX_OK) {
            kx_error("sandbox: cannot subscribe to %s: %s", subs[i].subject, kx_err_str(err));
            return err;
        }
    }
    return KX_OK;
}
