/* account_quota.h — KX_SANDBOX_MAX_PER_ACCOUNT for the local provider, counted over the whole
 * fleet of brokers that share KX_SANDBOX_ROOT (fleet.h), not per broker.
 *
 * Each start for an account leaves a mark, <root>/.accounts/<account>/<project> (an empty
 * file); the account's sandboxes are the marked projects whose record (lifecycle.h) says
 * running, whichever broker runs them — a sandbox adopted from a dead broker keeps counting.
 * A mark whose record says anything else (stopped, archived, deleted, a start that failed) is
 * removed while counting, so the count costs one record read per sandbox the account has
 * started and not yet been counted as stopped. Counting and marking are one step under
 * <root>/.accounts/<account>.lock (flock), so two brokers starting sandboxes for one account
 * at once cannot both take the last place.
 *
 * The caller claims the project's record first (sb_lifecycle_claim: running, this broker),
 * then asks here: a broker racing it for the same account sees that record running through
 * its mark. The project being started is not counted against itself.
 *
 * On the loop thread; a few file operations per start (a jail's start costs far more). */
#ifndef SB_ACCOUNT_QUOTA_H
#define SB_ACCOUNT_QUOTA_H

#include <stddef.h>

#include "broker.h"

/* Whether account may have the sandbox of project_id running (and marks it so): KX_OK;
 * KX_ERR_QUOTA with why naming the limit when the account has KX_SANDBOX_MAX_PER_ACCOUNT
 * running already; KX_ERR_INTERNAL (why) when the marks cannot be read or written. account
 * NULL, "" or not a UUID, or a limit of 0: KX_OK, nothing counted. */
kx_err sb_account_admit(sb_broker *b, const char *account, const char *project_id, char *why,
                        size_t whylen);

#endif
