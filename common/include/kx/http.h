/* kx/http.h — blocking HTTP client over libcurl (one easy handle per call), for services and
 * tests that can afford to wait. Asynchronous transfers on a loop: kx/curlm.h. */
#ifndef KX_HTTP_H
#define KX_HTTP_H

#include <stddef.h>
#include "kx/err.h"
#include "kx/time.h"

typedef struct kx_http_resp {
    long status;
    char *body; /* NUL-terminated, malloc'd (owned by the struct) */
    size_t len;
    char *content_type; /* malloc'd or NULL */
} kx_http_resp;

/* Call once per process before threads start (curl_global_init). */
kx_err kx_http_global_init(void);

/* method: "GET", "POST", ...; headers: NULL-terminated array of "Name: value" or NULL;
 * body may be NULL. The transfer is aborted at the deadline (KX_ERR_TIMEOUT). A response with
 * any status is KX_OK. max_body caps the body (0 = 16 MiB). */
kx_err kx_http_request(const char *method, const char *url, const char *const *headers,
                       const char *body, size_t body_len, kx_deadline deadline, size_t max_body,
                       kx_http_resp *out);
void kx_http_resp_free(kx_http_resp *r);

#endif
