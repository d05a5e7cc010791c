/* heap.c — the agent-runner's malloc thresholds (see heap.h). */
#include "heap.h"

#include <malloc.h>

bool heap_tune(void)
{
    /* both fixed: setting either one turns off glibc's dynamic raising of the two */
    bool ok = mallopt(M_TRIM_THRESHOLD, (int)HEAP_TRIM_THRESHOLD) == 1;
    return mallopt(M_MMAP_THRESHOLD, (int)HEAP_MMAP_THRESHOLD) == 1 && ok;
}
