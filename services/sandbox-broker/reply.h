/* reply.h — answering kx.sandbox.exec requests. Every answer is a kx.v1.SandboxExecResult,
 * errors included (docs/subjects.md: the caller always gets the message it expects, with
 * `error` set when the command could not be run). req stays the caller's (not destroyed). */
#ifndef SB_REPLY_H
#define SB_REPLY_H

#include "broker.h"
#include "kx/pb.h"

/* Sends res as the reply to req; logs (does not return) a failure to send. */
void sb_reply_result(sb_broker *b, natsMsg *req, const Kx__V1__SandboxExecResult *res);

/* Replies started=false (or started as given) with error {kx_err_code(err), message}.
 * exec_id and session_name may be NULL. */
void sb_reply_error(sb_broker *b, natsMsg *req, const char *exec_id, const char *session_name,
                    bool started, kx_err err, const char *message);

#endif
