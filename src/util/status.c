#include "util/status.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char sp_err_msg[1024];
static _Thread_local const char *sp_err_where = "";

sp_status sp_error_set(sp_status code, const char *where, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sp_err_msg, sizeof sp_err_msg, fmt, ap);
    va_end(ap);
    /* One line, always: fold any newline a caller let through. */
    for (char *p = sp_err_msg; *p; ++p)
        if (*p == '\n' || *p == '\r') *p = ' ';
    sp_err_where = where;
    return code;
}

const char *sp_last_error(void) {
    return sp_err_msg;
}

const char *sp_last_error_where(void) {
    return sp_err_where;
}

void sp_error_clear(void) {
    sp_err_msg[0] = '\0';
    sp_err_where = "";
}

const char *sp_status_name(sp_status st) {
    switch (st) {
    case SP_OK:
        return "ok";
    case SP_ERR_ARG:
        return "argument error";
    case SP_ERR_SPEC:
        return "model spec error";
    case SP_ERR_NOMEM:
        return "out of memory";
    case SP_ERR_IO:
        return "I/O error";
    case SP_ERR_DATA:
        return "data error";
    case SP_ERR_NUMERIC:
        return "numeric error";
    case SP_ERR_MPI:
        return "MPI error";
    case SP_ERR_INTERRUPT:
        return "interrupted";
    case SP_ERR_INTERNAL:
        return "internal error";
    }
    return "unknown error";
}
