/*
 * shardprop/status.h — every function that can fail returns an sp_status.
 *
 * SP_OK is zero. On failure the library records one human-readable line
 * (naming the file, dataset or spec item and what is wrong) that
 * sp_last_error() returns until the next error on the same thread.
 *
 *     sp_status st = sp_model_create(&m, "dense:10", shape, 1, 32);
 *     if (st != SP_OK) { fprintf(stderr, "error: %s\n", sp_last_error()); return 1; }
 */
#ifndef SHARDPROP_STATUS_H
#define SHARDPROP_STATUS_H

typedef enum sp_status {
    SP_OK = 0,
    SP_ERR_ARG,       /* a bad argument, flag or configuration value */
    SP_ERR_SPEC,      /* a model spec that does not parse or does not fit the input */
    SP_ERR_NOMEM,     /* an allocation failed or would exceed a limit */
    SP_ERR_IO,        /* a file could not be opened, read or written */
    SP_ERR_DATA,      /* a data or checkpoint file breaks the file contract */
    SP_ERR_NUMERIC,   /* NaN/Inf where a finite number is required */
    SP_ERR_MPI,       /* a communication failure or a disagreement between ranks */
    SP_ERR_INTERRUPT, /* stopped by a signal */
    SP_ERR_INTERNAL   /* a bug: an invariant of shardprop itself was broken */
} sp_status;

/* The message of the last error recorded on this thread ("" if none). */
const char *sp_last_error(void);

/* Short name of a status code, e.g. "data error". */
const char *sp_status_name(sp_status st);

#endif
