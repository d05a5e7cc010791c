/* args_scan.c — whether a streaming call's arguments are one whole JSON object yet (see
 * args_scan.h). */
#include "args_scan.h"

#include <jansson.h>
#include <string.h>

void args_scan_reset(args_scan *a)
{
    memset(a, 0, sizeof *a);
}

bool args_scan_whole(args_scan *a, const char *text, size_t len)
{
    if (len < a->pos)
        args_scan_reset(a);
    for (; a->pos < len && !a->never; a->pos++) {
        char c = text[a->pos];
        if (a->in_str) {
            if (a->esc)
                a->esc = false;
            else if (c == '\\')
                a->esc = true;
            else if (c == '"')
                a->in_str = false;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
            continue;
        if (a->closed || (a->depth == 0 && c != '{')) {
            a->never = true; /* something after the object, or not an object */
            break;
        }
        if (c == '"')
            a->in_str = true;
        else if (c == '{' || c == '[')
            a->depth++;
        else if ((c == '}' || c == ']') && --a->depth == 0)
            a->closed = true;
    }
    if (a->never || !a->closed)
        return false;
    if (a->verdict == 0) {
        json_t *v = json_loadb(text, len, 0, NULL);
        a->verdict = json_is_object(v) ? 1 : -1;
        json_decref(v);
    }
    return a->verdict == 1;
}
