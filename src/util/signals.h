/*
 * Stop requests by signal. SIGTERM, SIGINT and SIGUSR1 only set a flag; the trainer looks at it
 * at each step boundary, all ranks agree, and the run checkpoints and stops cleanly. A second
 * SIGINT ends the process at once (exit status 130).
 */
#ifndef SP_UTIL_SIGNALS_H
#define SP_UTIL_SIGNALS_H

/* Install the handlers (idempotent). */
void sp_signals_install(void);

/* The first stop signal received (SIGTERM, SIGINT or SIGUSR1), or 0. */
int sp_signals_pending(void);

#endif
