/* kx/jsonschema.h — a small JSON Schema validator for the subset tool schemas use.
 *
 * Tool arguments come from a model: as JSON (native calls) or from Kortix's XML format, where
 * every value arrives as text and the parser guesses types ("60" may come as 60 or "60", a
 * command "123" as the number 123). The validator checks arguments against a tool's
 * "parameters" schema before anything runs, and with KX_JS_COERCE repairs the guesses that
 * have one meaning: a string holding a boolean/integer/number where the schema wants one, a
 * string holding a JSON array/object where the schema wants one, and a number or boolean
 * where the schema wants a string (replaced by its JSON text); and an optional argument given
 * as null whose schema does not allow null is taken as not given (removed).
 *
 * The subset (anything else in a schema is refused by kx_jsonschema_check, so a schema never
 * relies on a keyword that is silently not enforced):
 *   type                 "object" | "array" | "string" | "integer" | "number" | "boolean" |
 *                        "null", or an array of them
 *   properties           { name: schema }
 *   required             [ names ]
 *   additionalProperties true | false | schema (default true)
 *   items                schema (every element)
 *   minItems, maxItems   on arrays
 *   enum                 [ values ] (compared with json_equal)
 *   minimum, maximum     on integers and numbers (inclusive)
 *   minLength, maxLength on strings, in characters (UTF-8 code points)
 *   description, title, default, examples   annotations (ignored)
 * Errors name the argument by its path and say what was expected, e.g.
 *   "'timeout' must be an integer between 1 and 3600 (got 0)"
 *   "'tasks[1].status' must be one of \"pending\", \"completed\", \"cancelled\" (got \"done\")"
 *   "'command' is required"
 * Pure; thread-safe. Unit tested in tests/unit/test_jsonschema.c; fuzzed by
 * tests/fuzz/jsonschema. */
#ifndef KX_JSONSCHEMA_H
#define KX_JSONSCHEMA_H

#include <jansson.h>
#include <stddef.h>
#include "kx/err.h"

#define KX_JS_COERCE 1u /* repair the type guesses of XML tool calls (see above) */

/* KX_OK when schema uses only the subset above (recursively, at most 32 levels deep); else
 * KX_ERR_INVALID with why naming the keyword and where. */
kx_err kx_jsonschema_check(const json_t *schema, char *why, size_t whylen);

/* Validates *instance against schema (which passed kx_jsonschema_check). With KX_JS_COERCE
 * values may be replaced inside *instance, and *instance itself (the reference is then
 * swapped: the old one released, *instance owns the new one). KX_OK, or KX_ERR_INVALID with
 * why as above (the first error found), or KX_ERR_NOMEM. */
kx_err kx_jsonschema_validate(const json_t *schema, json_t **instance, unsigned flags, char *why,
                              size_t whylen);

#endif
