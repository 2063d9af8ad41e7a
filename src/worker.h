/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The background workers that tick the engine (worker.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef AUTOMATION_WORKER_H
#define AUTOMATION_WORKER_H

#include "fmgr.h"

extern char *automation_database_name;
extern char *automation_role;
extern int	automation_naptime;
extern bool automation_enabled;
extern int	automation_outbox_vacuum_threshold;

extern void worker_init(void);

extern PGDLLEXPORT void automation_launcher_main(Datum main_arg);
extern PGDLLEXPORT void automation_worker_main(Datum main_arg);

#endif							/* AUTOMATION_WORKER_H */
