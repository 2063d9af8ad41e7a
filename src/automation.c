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

#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "utils/guc.h"

#include "automation.h"
#include "prediction.h"
#include "worker.h"

PG_MODULE_MAGIC;

char	   *automation_default_timezone = NULL;
int			automation_prediction_time_unit = PREDICTION_UNIT_WEEKS;
double		automation_discount_rate = 0.10;
double		automation_churn_risk_threshold = 0.3;
int			automation_prediction_min_customers = 100;
int			automation_prediction_refresh = 1440;

static const struct config_enum_entry prediction_time_unit_options[] = {
	{"days", PREDICTION_UNIT_DAYS, false},
	{"weeks", PREDICTION_UNIT_WEEKS, false},
	{"months", PREDICTION_UNIT_MONTHS, false},
	{NULL, 0, false}
};

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

	DefineCustomEnumVariable("automation.prediction_time_unit",
							 "Time unit in which automation.fit_models() measures customer histories.",
							 "The BG/NBD parameter alpha is in this unit; a fitted model keeps the unit it was fitted in.",
							 &automation_prediction_time_unit,
							 PREDICTION_UNIT_WEEKS,
							 prediction_time_unit_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomRealVariable("automation.discount_rate",
							 "Yearly discount rate of the predicted customer lifetime value.",
							 "clv_12m discounts each month's expected spend by (1 + rate)^(month / 12).",
							 &automation_discount_rate,
							 0.10, 0.0, 10.0,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomRealVariable("automation.churn_risk_threshold",
							 "Customers whose predicted probability of being alive is below this are at risk of churn.",
							 "The churn_risk segment holds the customers of automation.customer_prediction with p_alive below it.",
							 &automation_churn_risk_threshold,
							 0.3, 0.0, 1.0,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("automation.prediction_min_customers",
							"Customers needed before the models are fitted by maximum likelihood alone.",
							"With fewer, the fit is shrunk toward population priors.",
							&automation_prediction_min_customers,
							100, 1, INT_MAX,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("automation.prediction_refresh",
							"How often the tick scores customers again with the latest model.",
							"0 leaves rescoring to automation.score_customers() and automation.fit_models().",
							&automation_prediction_refresh,
							1440, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);

	/* last: defines the postmaster-only settings when preloading */
	worker_init();

	MarkGUCPrefixReserved("automation");
}
