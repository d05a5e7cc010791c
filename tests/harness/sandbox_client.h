/* tests/harness/sandbox_client.h — what tests and benchmarks do over and over on the bus:
 * connect a client and send a request with a Kx-Deadline and unpack its answer (any subject),
 * a run's submit as the gateway sends it, a tool call through kx.tool.exec with its output parsed, and on the sandbox-broker's subjects
 * (docs/subjects.md) a lifecycle op, a preview and a command with a new exec_id.
 *
 * These helpers never assert (cmocka tests and the benchmarks both use them): they answer NULL
 * with *err (when err is not NULL) saying why. Ownership: answers are the caller's
 * (kx_pb_free); what is passed in is borrowed for the call. Safe from any thread that may use
 * bus. */
#ifndef KX_TEST_SANDBOX_CLIENT_H
#define KX_TEST_SANDBOX_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "kx/bus.h"
#include "kx/pb.h"

/* Connects a client called name to url and waits up to 5 s until it is connected (the bus is
 * closed again when it is not). */
kx_err kx_th_bus_connect(const char *url, const char *name, kx_bus **out);

/* One request over the bus and its answer: sends rq on subject with a Kx-Deadline deadline_ms
 * from now and account (NULL: none) as the metadata's Kx-Account, waits for the answer and
 * unpacks it as desc. NULL when no answer came (*err: the request's error) or it did not
 * unpack (KX_ERR_PROTOCOL). *elapsed_us, if not NULL, gets the round trip. The answer is the
 * caller's (kx_pb_free). For any subject, not only the sandbox's. */
void *kx_th_bus_ask(kx_bus *bus, const char *subject, const ProtobufCMessage *rq,
                    const char *account, int64_t deadline_ms,
                    const ProtobufCMessageDescriptor *desc, int64_t *elapsed_us, kx_err *err);

/* What the gateway sends for a new queued run: a RunSubmit for run (thread, account) on
 * kx.run.submit, a core publish with a 5 s Kx-Deadline and account as Kx-Account, then a flush
 * (nats-server has it when this returns KX_OK). */
kx_err kx_th_run_submit(kx_bus *bus, const char *run, const char *thread, const char *account);

/* A tool call's answer: the request's error (KX_OK when res is set), the ToolResult, its
 * output_json parsed (NULL when empty or not JSON) and the round trip. The reply owns res and
 * output: kx_th_tool_reply_free. */
typedef struct kx_th_tool_reply {
    kx_err err;
    Kx__V1__ToolResult *res;
    json_t *output;
    int64_t elapsed_ms;
} kx_th_tool_reply;
/* tc through kx.tool.exec (kx_th_bus_ask: account as Kx-Account, deadline_ms from now). */
kx_th_tool_reply kx_th_tool_exec(kx_bus *bus, const Kx__V1__ToolCall *tc, const char *account,
                                 int64_t deadline_ms);
/* Frees what r holds and zeroes it. */
void kx_th_tool_reply_free(kx_th_tool_reply *r);

/* The sandbox requests below send their project as the metadata's account too.
 *
 * The lifecycle op ("create", "get", ..., "ensure_active") of project on <prefix><op>; prefix
 * NULL is "kx.sandbox." (a broker's own subjects: "kx.sandbox.<broker id>."). */
Kx__V1__SandboxLifecycleReply *kx_th_life_request(kx_bus *bus, const char *prefix, const char *op,
                                                  const char *project, int64_t deadline_ms,
                                                  int64_t *elapsed_us, kx_err *err);

/* Until a kx.sandbox.get (of a new project, 5 s deadline each) is answered, at most 50 tries
 * 100 ms apart: a fresh connection may not see a broker's subscriptions at once. */
kx_err kx_th_sb_wait_serving(kx_bus *bus);

/* kx.sandbox.preview of port for project (token NULL: none). */
Kx__V1__SandboxPreviewReply *kx_th_preview_request(kx_bus *bus, const char *project, int port,
                                                   const char *token, int64_t deadline_ms,
                                                   kx_err *err);

/* A kx.sandbox.exec request; a new exec_id is made for it. */
typedef struct kx_th_exec {
    const char *subject; /* NULL: kx.sandbox.exec */
    const char *project;
    const char *command;
    const char *folder;  /* NULL: none */
    const char *session; /* NULL: none (the broker makes one) */
    bool blocking;
    int timeout_s;
    int64_t deadline_ms; /* 0: 30 s */
} kx_th_exec;
Kx__V1__SandboxExecResult *kx_th_exec_request(kx_bus *bus, const kx_th_exec *x,
                                              int64_t *elapsed_us, kx_err *err);

#endif
