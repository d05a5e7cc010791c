/* kx/svc.h — what every service process is made of, wired once so main.c stays a table of
 * contents:
 *   kx_svc_init:  instance id, logging, configuration common to all services (KX_NATS_URL,
 *                 KX_HEALTH_PORT, KX_BIND_ADDR), the loop, SIGTERM/SIGINT handling, the NATS
 *                 bus, the health responder on kx.svc.health.<name>, and the ops HTTP server.
 *   kx_svc_run:   runs the loop until a signal (or kx_svc_exit) — on the first SIGTERM the
 *                 drain callback runs; the service calls kx_svc_exit when drained (or the drain
 *                 timeout, KX_DRAIN_TIMEOUT_MS, default 10 s, exits anyway).
 *   kx_svc_close: stops the ops server, closes the bus, frees the loop.
 *
 * Ownership: kx_svc is a caller-owned struct (usually on main's stack); everything it points
 * to is owned by it and freed by kx_svc_close. */
#ifndef KX_SVC_H
#define KX_SVC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "kx/bus.h"
#include "kx/httpd.h"
#include "kx/loop.h"

#define KX_VERSION "0.1.0"

typedef struct kx_svc kx_svc;
typedef void (*kx_svc_drain_fn)(kx_svc *svc, void *arg);
/* Extra readiness beyond "NATS connected" (e.g. Postgres reachable); thread-safe, quick. */
typedef bool (*kx_svc_ready_fn)(kx_svc *svc, void *arg, char *why, size_t whylen);

struct kx_svc {
    const char *name;     /* static string: "gateway", "agent-runner", ... */
    char instance_id[64]; /* "<name>-<hostname>-<pid>-<4 hex>" */
    int64_t started_mono_ms;
    kx_loop *loop;
    kx_bus *bus;
    kx_httpd *ops;
    natsSubscription *health_sub;
    atomic_bool draining;
    kx_svc_drain_fn drain_fn;
    void *drain_arg;
    kx_svc_ready_fn ready_fn;
    void *ready_arg;
    atomic_bool ready_known; /* kx_svc_on_ready was called (set after ready_fn/ready_arg) */
    kx_timer *drain_timer;
    int64_t drain_timeout_ms;
    uint16_t health_port;
    char notes[512]; /* HealthReply.notes: set once before kx_svc_run */
};

/* default_health_port is used when KX_HEALTH_PORT is unset (each service has its own). */
kx_err kx_svc_init(kx_svc *svc, const char *name, uint16_t default_health_port);
void kx_svc_on_drain(kx_svc *svc, kx_svc_drain_fn fn, void *arg);
/* How readiness is judged from now on: fn (NULL: NATS connected is enough). Call it once the
 * service has made what its readiness depends on, before kx_svc_run. Until the first call
 * /readyz and kx.svc.health say "starting" (not ready): the ops server and the health
 * responder start inside kx_svc_init, before the service has made those. */
void kx_svc_on_ready(kx_svc *svc, kx_svc_ready_fn fn, void *arg);
/* Runs the loop; returns the process exit code (0 after a clean drain). */
int kx_svc_run(kx_svc *svc);
/* Thread-safe: ends kx_svc_run (call when drained). */
void kx_svc_exit(kx_svc *svc);
bool kx_svc_draining(const kx_svc *svc);
/* A start-up step's wait before it tries again (Postgres or NATS not there yet), on the main
 * thread before kx_svc_run: waits ms, or less when SIGTERM/SIGINT comes (the loop that would
 * read them does not run yet, so a sleep there left the service deaf to them). true when the
 * service is to stop (it is then draining): give up the start and exit 0. */
bool kx_svc_pause(kx_svc *svc, int64_t ms);
/* Sets HealthReply.notes (what every health answer says, e.g. an unsafe mode). Call before
 * kx_svc_run. */
void kx_svc_set_notes(kx_svc *svc, const char *notes);
void kx_svc_close(kx_svc *svc);

#endif
