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
#include "parser/scansup.h"
#include "pgtime.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "automation.h"
#include "outbox.h"
#include "prediction.h"
#include "worker.h"

PG_MODULE_MAGIC;

char	   *automation_default_timezone = NULL;
char	   *automation_cart_url = NULL;
int			automation_min_interval = 16 * 3600;
int			automation_max_per_week = 3;
int			automation_quiet_hours_start = 21;
int			automation_quiet_hours_end = 8;
int			automation_saturation_limit = 5;
int			automation_attribution_window = 5 * 86400;
int			automation_low_stock_threshold = 5;
double		automation_points_per_unit = 1.0;
double		automation_vip_threshold = 500.0;
double		automation_vip_gold_threshold = 750.0;
double		automation_lapsing_factor = 2.0;
int			automation_lapsing_min_days = 30;
int			automation_lost_days = 365;
int			automation_loyal_orders = 3;
int			automation_prediction_time_unit = PREDICTION_UNIT_WEEKS;
double		automation_discount_rate = 0.10;
double		automation_churn_risk_threshold = 0.3;
int			automation_prediction_min_customers = 100;
int			automation_prediction_refresh = 1440;
static int	automation_lifecycle_refresh = 1440;
static int	automation_trigger_grace = 60;
static int	automation_replenishment_min_observations = 5;
static double automation_subscription_max_spread = 0.25;
static double automation_replenishment_max_spread = 1.0;
int			automation_segment_timeout = 5 * 60 * 1000;
int			automation_related_refresh_interval = 1440;
int			automation_related_min_customers = 2;

static const struct config_enum_entry prediction_time_unit_options[] = {
	{"days", PREDICTION_UNIT_DAYS, false},
	{"weeks", PREDICTION_UNIT_WEEKS, false},
	{"months", PREDICTION_UNIT_MONTHS, false},
	{NULL, 0, false}
};

void		_PG_init(void);

/*
 * Accept only time zone names PostgreSQL itself knows, so that a typo is
 * caught when the setting is made rather than when a message is scheduled;
 * and not a name SQL reads otherwise.  AT TIME ZONE and date_trunc read a
 * name that is also a time zone abbreviation (CET, EET, WET, MET) as the
 * abbreviation, a fixed offset, while pg_tzset loads the zone with its
 * summer time: the profiles' quarters and the triggers' clock would be an
 * hour apart from the profile pass's all summer.  An abbreviation that means
 * what the zone means (UTC, GMT, EST: a fixed offset, the same) is fine.
 * Nor a value that starts with a sign: a customer's "+03:00" is three hours
 * east of UTC, the ISO 8601 way (see automation_zone), while the SQL time
 * functions read the setting the POSIX way, three hours west.
 */
static bool
check_default_timezone(char **newval, void **extra, GucSource source)
{
	pg_tz	   *zone;
	char	   *lower;
	int			offset;
	pg_tz	   *abbrev_zone;
	int			type;
	long int	gmtoff;

	if (*newval == NULL || (*newval)[0] == '\0')
	{
		GUC_check_errdetail("The time zone must not be empty.");
		return false;
	}
	if ((*newval)[0] == '+' || (*newval)[0] == '-')
	{
		GUC_check_errdetail("An offset that starts with its sign is east of UTC when positive in a customer's time zone (ISO 8601), but west in PostgreSQL's time functions (POSIX).");
		GUC_check_errhint("Use a zone's name, such as \"Europe/Moscow\"; for a fixed offset, \"Etc/GMT-3\" is three hours east of UTC.");
		return false;
	}
	if (strlen(*newval) >= TZ_STRLEN_MAX || (zone = pg_tzset(*newval)) == NULL)
	{
		GUC_check_errdetail("\"%s\" is not a time zone name known to this server.", *newval);
		GUC_check_errhint("Use a name from pg_timezone_names, such as \"Europe/Helsinki\".");
		return false;
	}
	lower = downcase_truncate_identifier(*newval, strlen(*newval), false);
	type = DecodeTimezoneAbbrev(0, lower, &offset, &abbrev_zone);
	pfree(lower);
	if (((type == TZ || type == DTZ)
		 && (!pg_get_timezone_offset(zone, &gmtoff) || gmtoff != offset))
		|| (type == DYNTZ && abbrev_zone != NULL
			&& strcmp(pg_get_timezone_name(abbrev_zone), pg_get_timezone_name(zone)) != 0))
	{
		GUC_check_errdetail("\"%s\" is also a time zone abbreviation, which SQL reads as a fixed offset from UTC, without the zone's summer time.",
							*newval);
		GUC_check_errhint("Use the name of a place in the zone, such as \"Europe/Berlin\" rather than CET.");
		return false;
	}
	return true;
}

/*
 * automation.cart_url must say where the cart's key goes: a link without
 * {cart_id} would send every customer to the same page, and no one's cart.
 */
static bool
check_cart_url(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || strstr(*newval, "{cart_id}") == NULL)
	{
		GUC_check_errdetail("The link must contain {cart_id}, which is replaced by the cart's key.");
		GUC_check_errhint("For example \"https://shop.example/cart/{cart_id}\".");
		return false;
	}
	return true;
}

PG_FUNCTION_INFO_V1(automation_load);

/*
 * automation._load(): does nothing but make sure this library, and with it
 * the automation.* settings, is loaded in the session.  SQL functions call
 * it before current_setting('automation....') when the library may not be
 * preloaded.
 */
Datum
automation_load(PG_FUNCTION_ARGS)
{
	PG_RETURN_VOID();
}

/*
 * The zone a customer's time zone value names, or NULL when the server
 * knows none.  An offset written the ISO 8601 way -- "+03", "+03:00",
 * "+0300", "-05:30" -- is east of UTC when positive, as a shop that stores
 * offsets means it; pg_tzset, and AT TIME ZONE, read it as a POSIX zone,
 * where the sign is the other way round ("+03:00" is three hours behind
 * UTC).  Anything else that starts with a sign ("+03:5", "+123") is no zone;
 * the rest is a name, or a POSIX zone, for pg_tzset.
 */
pg_tz *
automation_zone(const char *name)
{
	size_t		len = strlen(name);
	const char *p = name + 1;
	int			hours = 0;
	int			minutes = 0;
	int			digits = 0;

	if (len == 0 || len >= TZ_STRLEN_MAX)
		return NULL;
	if (name[0] != '+' && name[0] != '-')
		return pg_tzset(name);
	while (digits < 2 && *p >= '0' && *p <= '9')
	{
		hours = hours * 10 + (*p++ - '0');
		digits++;
	}
	if (digits == 0)
		return NULL;
	if (*p == ':' || (digits == 2 && *p >= '0' && *p <= '9'))
	{
		if (*p == ':')
			p++;
		if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9')
			return NULL;
		minutes = (p[0] - '0') * 10 + (p[1] - '0');
		p += 2;
	}
	if (*p != '\0')
		return NULL;
	/* the offsets in use run from -12:00 to +14:00 */
	if (hours > 14 || minutes >= 60 || (hours == 14 && minutes > 0))
		return NULL;
	/* pg_tzset_offset takes seconds west of Greenwich */
	return pg_tzset_offset((name[0] == '+' ? -1L : 1L) * (hours * 3600L + minutes * 60L));
}

PG_FUNCTION_INFO_V1(automation_valid_timezone);

/*
 * automation._valid_timezone(name text): whether the server knows a time
 * zone of that name.  The shop's time zone column may hold anything; a
 * name it does not know falls back to automation.default_timezone rather
 * than failing the tick.  pg_tzset caches what it loads, so this is cheap
 * to call per customer, unlike a scan of pg_timezone_names.
 */
Datum
automation_valid_timezone(PG_FUNCTION_ARGS)
{
	char	   *name;

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(false);
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	PG_RETURN_BOOL(automation_zone(name) != NULL);
}

/*
 * The zone of that name, as automation_zone() loads it: always the zone
 * with its rules, summer time and all.  (AT TIME ZONE reads a name that is
 * also a time zone abbreviation -- CET, EET, WET, MET -- as the
 * abbreviation, a fixed offset: a customer "in CET" would be an hour off
 * all summer; and "+03:00" as three hours behind UTC.)
 */
static pg_tz *
named_zone(text *name)
{
	char	   *zone = text_to_cstring(name);
	pg_tz	   *tz = automation_zone(zone);

	if (tz == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("time zone \"%s\" not recognized", zone)));
	return tz;
}

PG_FUNCTION_INFO_V1(automation_local_time);

/*
 * automation._local(ts timestamptz, zone text) returns timestamp: the wall
 * clock in the zone at ts.  As ts AT TIME ZONE zone, but zone is always a
 * zone's name (see named_zone).
 */
Datum
automation_local_time(PG_FUNCTION_ARGS)
{
	TimestampTz ts = PG_GETARG_TIMESTAMPTZ(0);
	pg_tz	   *tz = named_zone(PG_GETARG_TEXT_PP(1));
	struct pg_tm tm;
	fsec_t		fsec;
	int			offset;
	Timestamp	result;

	if (TIMESTAMP_NOT_FINITE(ts))
		PG_RETURN_TIMESTAMP(ts);
	if (timestamp2tm(ts, &offset, &tm, &fsec, NULL, tz) != 0 ||
		tm2timestamp(&tm, fsec, NULL, &result) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	PG_RETURN_TIMESTAMP(result);
}

PG_FUNCTION_INFO_V1(automation_zone_time);

/*
 * automation._zoned(local timestamp, zone text) returns timestamptz: the
 * moment the wall clock in the zone shows local.  As local AT TIME ZONE
 * zone, zone always a zone's name; a time the clocks skip, or show twice,
 * is taken as PostgreSQL takes it.
 */
Datum
automation_zone_time(PG_FUNCTION_ARGS)
{
	Timestamp	local = PG_GETARG_TIMESTAMP(0);
	pg_tz	   *tz = named_zone(PG_GETARG_TEXT_PP(1));
	struct pg_tm tm;
	fsec_t		fsec;
	int			offset;
	TimestampTz result;

	if (TIMESTAMP_NOT_FINITE(local))
		PG_RETURN_TIMESTAMPTZ(local);
	if (timestamp2tm(local, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	offset = DetermineTimeZoneOffset(&tm, tz);
	if (tm2timestamp(&tm, fsec, &offset, &result) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	PG_RETURN_TIMESTAMPTZ(result);
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

	DefineCustomStringVariable("automation.cart_url",
							   "Link that restores a cart; {cart_id} is replaced by the cart's key.",
							   NULL,
							   &automation_cart_url,
							   "https://shop.example/cart/{cart_id}",
							   PGC_USERSET, 0, check_cart_url, NULL, NULL);

	DefineCustomIntVariable("automation.min_interval",
							"Least time between two marketing messages to a customer on one channel.",
							"Transactional messages are exempt.",
							&automation_min_interval,
							16 * 3600, 0, 30 * 86400,
							PGC_USERSET, GUC_UNIT_S, NULL, NULL, NULL);

	DefineCustomIntVariable("automation.max_per_week",
							"Most marketing messages to a customer on one channel in 7 days.",
							"0 means no weekly cap.",
							&automation_max_per_week,
							3, 0, 1000,
							PGC_USERSET, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("automation.quiet_hours_start",
							"Hour of the customer's local day from which no marketing message is sent.",
							"Equal start and end hours turn quiet hours off.",
							&automation_quiet_hours_start,
							21, 0, 23,
							PGC_USERSET, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("automation.quiet_hours_end",
							"Hour of the customer's local day at which marketing messages may be sent again.",
							NULL,
							&automation_quiet_hours_end,
							8, 0, 23,
							PGC_USERSET, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("automation.saturation_limit",
							"Unengaged marketing messages in a row after which marketing to a customer stops.",
							"Marketing resumes when the customer opens, clicks or orders.  0 turns it off.",
							&automation_saturation_limit,
							5, 0, 1000,
							PGC_USERSET, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("automation.attribution_window",
							"How long after a message an order by its recipient counts as converted by it.",
							NULL,
							&automation_attribution_window,
							5 * 86400, 0, 365 * 86400,
							PGC_USERSET, GUC_UNIT_S, NULL, NULL, NULL);

	DefineCustomIntVariable("automation.low_stock_threshold",
							"Stock at or under which a cart message says \"only N left\".",
							NULL,
							&automation_low_stock_threshold,
							5, 0, PG_INT32_MAX,
							PGC_USERSET, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("automation.max_attempts",
							"Handouts of a message before it is dead.",
							"A message that the mailer reports failed is retried with "
							"backoff until it has been handed out this many times; one "
							"whose last lease runs out is dead too.",
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

	DefineCustomIntVariable("automation.prune_batch",
							"Archived messages automation.archive_outbox() prunes at most per call.",
							"The oldest go first, and a backlog is worked off over several "
							"ticks rather than in one long one.  0 prunes all that is due.",
							&automation_prune_batch,
							100000, 0, PG_INT32_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

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

	DefineCustomIntVariable("automation.trigger_grace",
							"How far before the previous tick a journey trigger looks again for rows committed late.",
							"Triggers keep a watermark: each tick looks at the moments since the previous tick's less this, never further back than the trigger's lookback.",
							&automation_trigger_grace,
							60, 0, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);

	DefineCustomIntVariable("automation.lifecycle_refresh",
							"How often the tick learns replenishment intervals and purchase patterns again.",
							"0 leaves it to automation.refresh_lifecycle().",
							&automation_lifecycle_refresh,
							1440, 0, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);

	DefineCustomIntVariable("automation.replenishment_min_observations",
							"Repeat purchases of a product needed before its interval is learned.",
							"Products with fewer use their configured consumption_days or are not reminded.",
							&automation_replenishment_min_observations,
							5, 1, INT_MAX,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	/* related products */
	DefineCustomIntVariable("automation.segment_timeout",
							"Longest a segment's query may run when the segments are evaluated.",
							"A segment whose query runs longer is not refreshed, with a warning, "
							"and keeps its members; the others go on.  0 means no limit.",
							&automation_segment_timeout,
							5 * 60 * 1000, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("automation.related_refresh_interval",
							"How old the related products may get before the tick computes them again.",
							"0 leaves it to automation.refresh_related_products().",
							&automation_related_refresh_interval,
							1440, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);

	DefineCustomIntVariable("automation.related_min_customers",
							"Customers who must have bought two products together before one is related to the other.",
							NULL,
							&automation_related_min_customers,
							2, 1, INT_MAX,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomRealVariable("automation.replenishment_max_spread",
							 "How consistent repeat purchases must be for an interval to be learned.",
							 "The largest interquartile range / median of the observed days per unit; above it a product is not treated as a consumable.",
							 &automation_replenishment_max_spread,
							 1.0, 0.0, 100.0,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomRealVariable("automation.subscription_max_spread",
							 "How regular repeat purchases must be to make a subscription candidate.",
							 "The largest coefficient of variation (standard deviation / mean) of the gaps between purchases of one product.",
							 &automation_subscription_max_spread,
							 0.25, 0.0, 10.0,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	/* last: defines the postmaster-only settings when preloading */
	worker_init();

	MarkGUCPrefixReserved("automation");
}

PG_FUNCTION_INFO_V1(automation_is_word);

/*
 * automation._is_word(s text, max_length integer) RETURNS boolean
 *
 * Whether s is a lower-case word of at most max_length bytes: a letter a-z,
 * then letters a-z, digits and underscores -- what the regular expression
 * '^[a-z][a-z0-9_]{0,<max_length - 1>}$' matches, in any server encoding
 * (its ranges are of code points; a byte of a multibyte character is never
 * ASCII).  The outbox's channel check is one: every message written and
 * every claim passes it, and the expression took 1.3 us a row.
 */
Datum
automation_is_word(PG_FUNCTION_ARGS)
{
	text	   *s = PG_GETARG_TEXT_PP(0);
	int32		max_length = PG_GETARG_INT32(1);
	const unsigned char *p = (const unsigned char *) VARDATA_ANY(s);
	int			len = VARSIZE_ANY_EXHDR(s);
	int			i;

	if (len == 0 || len > max_length || p[0] < 'a' || p[0] > 'z')
		PG_RETURN_BOOL(false);
	for (i = 1; i < len; i++)
	{
		if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '_'))
			PG_RETURN_BOOL(false);
	}
	PG_RETURN_BOOL(true);
}
