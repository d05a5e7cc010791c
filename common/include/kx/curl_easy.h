/* kx/curl_easy.h — the settings every outbound API call of ours gives its libcurl easy handle
 * (the sandbox-broker's Daytona client, the tool-executor's web tools, the agent-runner's LLM
 * calls, the mcp-proxy's HTTP transports): where the body goes, where curl writes its error, no
 * signals (we run on a loop thread, curl's DNS timeouts must not use SIGALRM), http and https
 * only (a redirect or a configured URL never reaches file:// or another scheme), who we are,
 * and a transfer timeout (or none, for a stream its caller bounds) with the connect phase
 * capped by it.
 *
 * Ownership: the caller owns the easy handle and everything o points to. curl copies the user
 * agent; the error buffer and the write callback's argument are used by curl until the transfer
 * ends and must outlive it (keep them in the transfer's own record). */
#ifndef KX_CURL_EASY_H
#define KX_CURL_EASY_H

#include <curl/curl.h>
#include <stdint.h>

typedef struct kx_curl_opts {
    curl_write_callback on_body; /* CURLOPT_WRITEFUNCTION */
    void *body_arg;              /* CURLOPT_WRITEDATA */
    char *errbuf;                /* CURLOPT_ERRORBUFFER: CURL_ERROR_SIZE bytes, cleared here;
                                    NULL: none */
    const char *user_agent;      /* e.g. "kortix-sandbox-broker/" KX_VERSION */
    int64_t timeout_ms;          /* the whole transfer; 0: no limit (a stream the caller bounds
                                    itself) */
    int64_t connect_ms;          /* the connect phase: at most this, and never past timeout_ms */
} kx_curl_opts;

/* Applies o to e (URL, method, headers and body stay the caller's to set). */
void kx_curl_easy_setup(CURL *e, const kx_curl_opts *o);

#endif
