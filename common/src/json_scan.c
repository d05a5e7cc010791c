/* json_scan.c — JSON string literals checked without a tree (see kx/json_scan.h). */
#include "kx/json_scan.h"

#include <stddef.h>

#include "kx/utf8.h"

int kx_json_hex4(const unsigned char *p)
{
    int v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned char c = p[k];
        int d = c >= '0' && c <= '9' ? c - '0'
            : c >= 'a' && c <= 'f'   ? c - 'a' + 10
            : c >= 'A' && c <= 'F'   ? c - 'A' + 10
                                     : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

const unsigned char *kx_json_scan_string(const unsigned char *p, const unsigned char *end,
                                         bool *escaped)
{
    *escaped = false;
    p++;
    while (p < end) {
        unsigned char c = *p;
        if (c == '"')
            return p + 1;
        if (c < 0x20)
            return NULL;
        if (c == '\\') {
            *escaped = true;
            if (end - p < 2)
                return NULL;
            unsigned char e = p[1];
            if (e == 'u') {
                if (end - p < 6)
                    return NULL;
                int v = kx_json_hex4(p + 2);
                if (v <= 0 || (v >= 0xD800 && v <= 0xDFFF))
                    return NULL;
                p += 6;
            } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                       e == 'r' || e == 't') {
                p += 2;
            } else {
                return NULL;
            }
            continue;
        }
        if (c < 0x80) {
            p++;
            continue;
        }
        size_t n = kx_utf8_seq_len(p, (size_t)(end - p));
        if (n == 0)
            return NULL;
        p += n;
    }
    return NULL;
}
