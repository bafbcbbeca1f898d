/* Internal error recording: SP_FAIL sets the one-line message and returns the code. */
#ifndef SP_UTIL_STATUS_H
#define SP_UTIL_STATUS_H

#include "shardprop/status.h"

/* Record a message (printf-style) for this thread and return `code`. `where` is "file:line". */
sp_status sp_error_set(sp_status code, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Where the last error was raised in shardprop's own source ("src/x.c:12"), for debugging. */
const char *sp_last_error_where(void);

/* Clear the recorded error of this thread. */
void sp_error_clear(void);

#define SP_STR2_(x) #x
#define SP_STR_(x)  SP_STR2_(x)
/* return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': ...", path, name); */
#define SP_FAIL(code, ...) sp_error_set((code), __FILE__ ":" SP_STR_(__LINE__), __VA_ARGS__)

/* Propagate a failed status to the caller. */
#define SP_CHECK(expr)                                                                             \
    do {                                                                                           \
        sp_status sp_st_ = (expr);                                                                 \
        if (sp_st_ != SP_OK) return sp_st_;                                                        \
    } while (0)

#endif
