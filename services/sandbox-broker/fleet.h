/* fleet.h — several sandbox-brokers serving one fleet over one KX_SANDBOX_ROOT: who runs a
 * sandbox, how a request reaches it, and who takes a sandbox over when its broker dies.
 *
 *   identity   each broker has an id (KX_SANDBOX_BROKER_ID, default its instance id), a NATS
 *              token: it subscribes kx.sandbox.<id>.> (no queue group) besides the shared
 *              subjects (queue group "sandbox-broker").
 *   lease      <root>/.brokers/<id>, its mtime touched every KX_SANDBOX_LEASE_MS / 4: one
 *              file write per broker per beat, whatever the number of sandboxes (O(1)). A
 *              broker is alive while its lease is younger than KX_SANDBOX_LEASE_MS.
 *   ownership  the record (<root>/<project>/sandbox.state, lifecycle.c) names the broker that
 *              runs the sandbox (`owner`, meaningful while the state is running), changed only
 *              under the record's lock (flock on <root>/<project>/sandbox.lock): a start
 *              claims it, and a claim is refused while another live broker owns it.
 *   routing    a request on a shared subject for a sandbox that runs on another live broker
 *              is forwarded as is (headers, reply subject) to kx.sandbox.<owner>.<op>: the
 *              owner answers the caller directly. Requests on a broker's own subjects are
 *              never forwarded again.
 *   takeover   each beat a broker reads <root>/.brokers (one entry per broker); for each lease
 *              that expired since it last looked, it adopts every record that broker left
 *              running (the claim decides between brokers racing for one). A sandbox is
 *              running again on a live broker within KX_SANDBOX_LEASE_MS * 1.25 plus a start.
 *              At start a broker adopts what it (same id) or a dead broker left running.
 *
 * All on the loop thread. The table of direct handlers is static (one broker per process). */
#ifndef SB_FLEET_H
#define SB_FLEET_H

#include <stdbool.h>
#include "broker.h"

/* Reads the id and lease settings, writes the first lease. Before any subscription. */
kx_err sb_fleet_init(sb_broker *b);

/* Subscribes subject (queue group queue, or none) and registers cb for the broker's own
 * subject kx.sandbox.<id>.<last token of subject>. */
kx_err sb_fleet_subscribe(sb_broker *b, const char *subject, const char *queue, kx_bus_msg_cb cb,
                          void *arg, natsSubscription **out);

/* Subscribes kx.sandbox.<id>.> and starts the beat. After every sb_fleet_subscribe. */
kx_err sb_fleet_start(sb_broker *b);

/* True when the request was forwarded to the sandbox's owner (msg consumed); false when this
 * broker must answer it (it runs the sandbox, nobody live does, or msg came on its own
 * subject). project_id must be a valid UUID. */
bool sb_fleet_route(sb_broker *b, natsMsg *msg, const char *project_id);

/* Whether broker id holds a live lease (this broker always does). */
bool sb_fleet_alive(sb_broker *b, const char *id);

/* Adopts the records left running by broker `dead` (NULL: by this broker's id, by no one, or
 * by a broker whose lease expired — the start-up pass). Returns how many now run here. */
int sb_fleet_adopt(sb_broker *b, const char *dead);

/* Drain, after every sandbox of this broker was stopped: unsubscribes the broker's own
 * subjects, stops the beat, removes the lease. */
void sb_fleet_stop(sb_broker *b);

#endif
