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
#include "worker.h"

PG_MODULE_MAGIC;

char	   *automation_default_timezone = NULL;
double		automation_points_per_unit = 1.0;
double		automation_vip_threshold = 500.0;
double		automation_vip_gold_threshold = 750.0;
double		automation_lapsing_factor = 2.0;
int			automation_lapsing_min_days = 30;
int			automation_lost_days = 365;
int			automation_loyal_orders = 3;

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

	/* profiles and segments */
	DefineCustomRealVariable("automation.points_per_unit",
							 "Loyalty points per currency unit spent.",
							 NULL, &automation_points_per_unit, 1.0, 0.0, 1e6,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("automation.vip_threshold",
							 "Previous-quarter spend that makes a customer a VIP.",
							 NULL, &automation_vip_threshold, 500.0, 0.0, 1e15,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("automation.vip_gold_threshold",
							 "Previous-quarter spend that makes a customer a gold VIP.",
							 NULL, &automation_vip_gold_threshold, 750.0, 0.0, 1e15,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("automation.lapsing_factor",
							 "A customer is lapsing after this many times their own mean gap between orders.",
							 NULL, &automation_lapsing_factor, 2.0, 0.0, 1000.0,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("automation.lapsing_min_days",
							"A customer is never lapsing before this many days without an order.",
							NULL, &automation_lapsing_min_days, 30, 0, 36500,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("automation.lost_days",
							"A customer is lost after this many days without an order.",
							NULL, &automation_lost_days, 365, 1, 36500,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("automation.loyal_orders",
							"Orders that make a customer loyal (two make them returning).",
							NULL, &automation_loyal_orders, 3, 2, 1000000,
							PGC_USERSET, 0, NULL, NULL, NULL);

	/* last: defines the postmaster-only settings when preloading */
	worker_init();

	MarkGUCPrefixReserved("automation");
}
