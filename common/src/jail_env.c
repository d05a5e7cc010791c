/* jail_env.c — the network settings every jail of the suite follows, read from the
 * environment (KX_SANDBOX_NETWORK, KX_SANDBOX_DENY_PORTS, KX_NATS_URL): the sandbox-broker's
 * sandboxes and the mcp-proxy's stdio servers see the same network. See kx/jail.h. */
#include "kx/jail.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/config.h"

kx_err kx_jail_net_from_env(kx_jail_net *net, uint16_t *ports, size_t cap, size_t *nports,
                            char *why, size_t whylen)
{
    *nports = 0;
    const char *mode = kx_env_str("KX_SANDBOX_NETWORK", "none");
    if (strcmp(mode, "none") == 0) {
        *net = KX_JAIL_NET_NONE;
    } else if (strcmp(mode, "host") == 0) {
        *net = KX_JAIL_NET_HOST;
    } else {
        snprintf(why, whylen, "KX_SANDBOX_NETWORK=\"%.100s\" is not valid: expected none or host",
                 mode);
        return KX_ERR_INVALID;
    }
    const char *list = kx_env_str("KX_SANDBOX_DENY_PORTS", "");
    char buf[512];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ", ", &save); tok != NULL;
         tok = strtok_r(NULL, ", ", &save)) {
        char *end = NULL;
        long p = strtol(tok, &end, 10);
        if (end == tok || *end != '\0' || p < 1 || p > 65535 || *nports + 1 >= cap) {
            snprintf(why, whylen,
                     "KX_SANDBOX_DENY_PORTS=\"%.200s\" is not valid: expected up to %zu "
                     "comma-separated ports 1..65535 (\"%.20s\" is wrong)",
                     list, cap > 0 ? cap - 1 : 0, tok);
            return KX_ERR_INVALID;
        }
        ports[(*nports)++] = (uint16_t)p;
    }
    const char *url = kx_env_str("KX_NATS_URL", "nats://127.0.0.1:4222");
    const char *colon = strrchr(url, ':');
    long p = colon ? strtol(colon + 1, NULL, 10) : 0;
    if (p > 0 && p < 65536 && *nports < cap)
        ports[(*nports)++] = (uint16_t)p;
    return KX_OK;
}
