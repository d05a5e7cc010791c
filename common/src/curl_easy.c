/* curl_easy.c — the common settings of an outbound API call's easy handle (kx/curl_easy.h). */
#include "kx/curl_easy.h"

void kx_curl_easy_setup(CURL *e, const kx_curl_opts *o)
{
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, o->on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, o->body_arg);
    if (o->errbuf != NULL) {
        o->errbuf[0] = '\0';
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, o->errbuf);
    }
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_USERAGENT, o->user_agent);
    int64_t connect_ms = o->connect_ms;
    if (o->timeout_ms > 0) {
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)o->timeout_ms);
        if (o->timeout_ms < connect_ms)
            connect_ms = o->timeout_ms;
    }
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_ms);
}
