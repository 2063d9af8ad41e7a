/*-------------------------------------------------------------------------
 *
 * automation.c
 *	  Module entry point of the automation extension: defines the
 *	  automation.* settings and initialises each module.
 *
 * _PG_init does nothing else.  Settings that may change at any time come
 * first; settings that only make sense at server start (the background
 * worker's) are defined by worker_init() after its check for
 * shared_preload_libraries, so it comes last.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "utils/guc.h"

#include "automation.h"
#include "outbox.h"
#include "worker.h"

PG_MODULE_MAGIC;

char	   *automation_default_timezone = NULL;

void		_PG_init(void);

/*
 * Accept only time zone names PostgreSQL itself knows, so that a typo is
 * caught when the setting is made rather than when a message is scheduled.
 */
static bool
check_default_timezone(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0')
	{
		GUC_check_errdetail("The time zone must not be empty.");
		return false;
	}
	if (pg_tzset(*newval) == NULL)
	{
		GUC_check_errdetail("\"%s\" is not a time zone name known to this server.", *newval);
		GUC_check_errhint("Use a name from pg_timezone_names, such as \"Europe/Helsinki\".");
		return false;
	}
	return true;
}

void
_PG_init(void)
{
	DefineCustomStringVariable("automation.default_timezone",
							   "Time zone of customers whose own time zone is unknown.",
							   "Used for quiet hours, preferred send hours and calendar "
							   "boundaries when no time zone column is bound or it is NULL.",
							   &automation_default_timezone,
							   "UTC",
							   PGC_USERSET,
							   0,
							   check_default_timezone, NULL, NULL);

	DefineCustomIntVariable("automation.max_attempts",
							"Handouts of a message before it is dead.",
							"A message that the mailer reports failed is retried with "
							"backoff until it has been handed out this many times.",
							&automation_max_attempts,
							8, 1, 1000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("automation.retention",
							"How long sent, cancelled and dead messages stay in the outbox archive.",
							"automation.archive_outbox() removes archived messages and their "
							"events once they are older than this.",
							&automation_retention,
							30 * 24 * 60, 60, PG_INT32_MAX,
							PGC_SUSET,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);

	/* last: defines the postmaster-only settings when preloading */
	worker_init();

	MarkGUCPrefixReserved("automation");
}
