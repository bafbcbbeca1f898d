/* The collective-timeout watchdog of a communicator. */
#ifndef SP_COMM_WATCHDOG_H
#define SP_COMM_WATCHDOG_H

#include <stdint.h>

#include "comm/comm.h"
#include "shardprop/status.h"

/*
 * The collective-timeout watchdog: a thread that notices when this rank has waited in one
 * collective call longer than timeout_s, prints which rank, which operation and which step,
 * and aborts the whole job (MPI_Abort). Every collective of this module is watched. Never a
 * silent hang: a rank that stalls outside collectives is caught by the others, which wait for
 * it inside one. timeout_s <= 0: off.
 */
sp_status sp_watchdog_start(sp_comm *c, double timeout_s);
void sp_watchdog_set_step(sp_comm *c, int64_t step);
void sp_watchdog_stop(sp_comm *c);

#endif
