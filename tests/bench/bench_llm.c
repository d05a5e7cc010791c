/* bench_llm.c — CPU per call of the agent-runner's LLM request and answer handling, each
 * against the way it was done before in the same run (the baseline):
 *   - the answer: one run's chunks as the demo model streams them (a tool-call turn and a text
 *     turn, usage chunks) folded by llm_stream_feed (a scan for the common shapes,
 *     llm_stream_scan.c) vs llm_stream_feed_tree (a jansson tree per chunk, as before);
 *   - the request: the OpenAI body of the harness's sample run (sample_run.h) with its tools'
 *     text spliced in, written straight into one buffer (llm_openai.c) vs printed from a
 *     jansson tree of the head, as before;
 *   - the easy handle of an attempt: taken from the client's pool of reset handles (llm.c)
 *     vs curl_easy_init + curl_easy_cleanup per attempt, as before; both set the attempt's
 *     options (no transfer: the receive buffer a transfer allocates is not counted).
 * Usage: bench_llm [iterations] (default 20000). Single thread, in-process; the figures are the
 * thread's CPU time per call (CLOCK_THREAD_CPUTIME_ID), steadier than wall time on a shared
 * machine. */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kx/buf.h"
#include "kx/json.h"
#include "llm_provider.h"
#include "llm_stream.h"
#include "sample_run.h"

#define HEAD "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1733100000,"

/* One run's answers in the demo model's shapes (tests/fakes/demo-model/demo_turn.c). */
static const char *const CHUNKS[] = {
    HEAD "\"model\":\"kortix/demo\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
         "\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\","
         "\"function\":{\"name\":\"view_tasks\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}",
    HEAD
    "\"model\":\"kortix/demo\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\""
    ":0,\"function\":{\"arguments\":\"{\\\"section\\\"\"}}]},\"finish_reason\":null}]}",
    HEAD
    "\"model\":\"kortix/demo\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\""
    ":0,\"function\":{\"arguments\":\": \\\"all\\\"}\"}}]},\"finish_reason\":null}]}",
    HEAD "\"model\":\"kortix/demo\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":"
         "\"tool_calls\"}]}",
    HEAD "\"model\":\"kortix/demo\",\"choices\":[],\"usage\":{\"prompt_tokens\":1200,"
         "\"completion_tokens\":34,\"total_tokens\":1234}}",
    "[DONE]",
    HEAD "\"model\":\"kortix/demo\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
         "\"content\":\"The tasks are \"},\"finish_reason\":null}]}",
    HEAD "\"model\":\"kortix/demo\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"listed "
         "above:\\nnothing \"},\"finish_reason\":null}]}",
    HEAD "\"model\":\"kortix/demo\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"is left "
         "to do.\"},\"finish_reason\":null}]}",
    HEAD "\"model\":\"kortix/demo\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":"
         "\"stop\"}]}",
    HEAD "\"model\":\"kortix/demo\",\"choices\":[],\"usage\":{\"prompt_tokens\":1300,"
         "\"completion_tokens\":12,\"total_tokens\":1312}}",
    "[DONE]",
};
#define NCHUNKS (sizeof CHUNKS / sizeof *CHUNKS)

static double cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* CPU, not wall: the machine is shared */
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

typedef llm_feed_result (*feed_fn)(llm_stream *s, const char *data, size_t len, size_t *from);

/* CPU per run's chunks; *check gets the folded text and arguments' length. */
static double time_feed(feed_fn f, long n, size_t *check)
{
    size_t lens[NCHUNKS];
    for (size_t i = 0; i < NCHUNKS; i++)
        lens[i] = strlen(CHUNKS[i]);
    double t0 = cpu_us();
    for (long k = 0; k < n; k++) {
        llm_stream s;
        llm_stream_init(&s);
        for (size_t i = 0; i < NCHUNKS; i++) {
            size_t from;
            f(&s, CHUNKS[i], lens[i], &from);
        }
        *check = s.content.len + (s.ncalls > 0 ? s.calls[0].arguments.len : 0);
        llm_stream_free(&s);
    }
    return (cpu_us() - t0) / (double)n;
}

/* The body as llm_openai.c printed it before: the head from a jansson tree, the tools' text
 * spliced in. */
static char *body_before(const llm_route *rt, const char *system, const char *tools_text,
                         const json_t *messages)
{
    json_t *root = kx_th_ref_body_head(rt->model, system, messages);
    char *head = kx_json_dumps_compact(root);
    kx_buf b = KX_BUF_INIT;
    kx_buf_add(&b, head, strlen(head) - 1);
    kx_buf_str(&b, ",\"tools\":");
    kx_buf_str(&b, tools_text);
    kx_buf_str(&b, ",\"tool_choice\":\"auto\"}");
    free(head);
    json_decref(root);
    return kx_buf_take(&b);
}

static size_t sink(char *p, size_t size, size_t nmemb, void *arg)
{
    (void)p;
    (void)arg;
    return size * nmemb;
}

/* The options start_attempt (llm.c) sets on an attempt's handle. */
static void attempt_opts(CURL *e, struct curl_slist *headers, const char *body, char *errbuf)
{
    curl_easy_setopt(e, CURLOPT_URL, "http://127.0.0.1:8090/v1/chat/completions");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "kortix-agent-runner/bench");
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, sink);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, NULL);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
}

/* CPU per attempt of its easy handle: a new one each time vs one kept and reset. */
static void time_easy(long n)
{
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Authorization: Bearer x");
    const char *body = "{\"model\":\"kortix/basic\",\"stream\":true}";
    char errbuf[CURL_ERROR_SIZE];
    double t0 = cpu_us();
    for (long k = 0; k < n; k++) {
        CURL *e = curl_easy_init();
        attempt_opts(e, h, body, errbuf);
        curl_easy_cleanup(e);
    }
    double b = (cpu_us() - t0) / (double)n;
    CURL *kept = curl_easy_init();
    t0 = cpu_us();
    for (long k = 0; k < n; k++) {
        attempt_opts(kept, h, body, errbuf);
        curl_easy_reset(kept);
    }
    double o = (cpu_us() - t0) / (double)n;
    curl_easy_cleanup(kept);
    curl_slist_free_all(h);
    printf("  %-48s %9s   new  %7.2f us CPU   reset  %7.2f us CPU   %.2f x\n",
           "easy handle: one attempt's", "", b, o, o > 0 ? b / o : 0);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 20000;
    if (n <= 0 || n > 100000000)
        n = 20000;
    printf("bench_llm: %ld iterations each, one thread\n", n);

    size_t c1 = 0, c2 = 0;
    double b = time_feed(llm_stream_feed_tree, n, &c1);
    double o = time_feed(llm_stream_feed, n, &c2);
    printf("  %-48s %2zu chunks   tree %7.2f us CPU   scan %7.2f us CPU   %.2f x%s\n",
           "answer: one run's chunks folded", NCHUNKS, b, o, o > 0 ? b / o : 0,
           c1 == c2 ? "" : "   MISMATCH");

    json_t *tools = kx_th_sample_tools();
    json_t *messages = kx_th_sample_messages();
    char *tools_text = kx_json_dumps_compact(tools);
    const char *system = "You are Kortix, an autonomous AI agent.\n\n# Tools\n...";
    llm_route rt;
    memset(&rt, 0, sizeof rt);
    rt.provider = "demo";
    snprintf(rt.model, sizeof rt.model, "%s", "kortix/basic");
    size_t l1 = 0, l2 = 0;
    bool same = true;
    double t0 = cpu_us();
    for (long k = 0; k < n; k++) {
        char *s = body_before(&rt, system, tools_text, messages);
        l1 = strlen(s);
        free(s);
    }
    b = (cpu_us() - t0) / (double)n;
    t0 = cpu_us();
    for (long k = 0; k < n; k++) {
        char *s = llm_openai_provider.body(NULL, &rt, system, tools, tools_text, messages, 0);
        l2 = strlen(s);
        if (k == 0) {
            char *want = body_before(&rt, system, tools_text, messages);
            same = strcmp(s, want) == 0;
            free(want);
        }
        free(s);
    }
    o = (cpu_us() - t0) / (double)n;
    printf("  %-48s %5zu B   tree %7.2f us CPU   direct %7.2f us CPU   %.2f x%s\n",
           "request: the sample run's body", l2, b, o, o > 0 ? b / o : 0,
           same && l1 == l2 ? "" : "   MISMATCH");
    free(tools_text);
    json_decref(tools);
    json_decref(messages);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    time_easy(n);
    curl_global_cleanup();
    return 0;
}
