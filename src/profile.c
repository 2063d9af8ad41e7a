/*-------------------------------------------------------------------------
 *
 * profile.c
 *	  The profile pass: one read of the shop's orders that produces a
 *	  customer profile for every customer who ordered.
 *
 * automation._profile_pass() runs the queries that automation.refresh_profiles()
 * builds from the bindings (sql/install/20_profile.sql) through SPI cursors,
 * fetching in batches, with the privileges of the role that bound the
 * orders.  Rows are folded into a hash table keyed by the shop's customer
 * key type (hashed and compared with the type's default hash opclass), with
 * fixed-size state per customer: first and last order, count, four money
 * sums, an hour-of-day histogram, the sum of squared gaps and a bitmap of
 * categories.  Money stays exact: amounts are accumulated as 128-bit
 * integers scaled to the column's decimal scale, and the pass switches to
 * numeric arithmetic if a value does not fit that scale.
 *
 * Gaps between orders need each customer's orders in time order.  Orders
 * are usually stored in the order they were placed, so the pass assumes it
 * and marks the customers for whom it was not true; their gap statistics are
 * recomputed afterwards from their orders read again, sorted by time.
 *
 * A full pass also computes the RFM quintile thresholds over the whole
 * population and scores every customer; an incremental pass leaves scores
 * NULL and automation._rescore() derives them set-based with the same rules.
 * The function returns the rows value per call, so that
 * INSERT ... SELECT streams them without materialising the result.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/plancache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "automation.h"
#include "profile.h"

PG_FUNCTION_INFO_V1(automation_profile_pass);
PG_FUNCTION_INFO_V1(automation_profile_pass_counts);

#define PROFILE_BATCH		10000
#define PROFILE_NATTS		21
#define MAX_CATEGORIES		64

/* which money sum */
enum
{
	SUM_TOTAL,
	SUM_90D,
	SUM_365D,
	SUM_PREV_QUARTER,
	NUM_SUMS
};

typedef union MoneySum
{
	int128		scaled;			/* amount x 10^scale, while pass->exact */
	Numeric		num;			/* otherwise */
} MoneySum;

/* Per-customer state: fixed size.  The key must come first (dynahash). */
typedef struct ProfileEntry
{
	Datum		key;
	pg_tz	   *tz;				/* bound time zone, or NULL for the default */
	TimestampTz first_at;
	TimestampTz last_at;
	double		gap_sq;			/* sum of squared gaps in days */
	uint64		categories;		/* bit i: category i of the pass */
	int32		count;
	uint8		hours[24];		/* orders by local hour, halved when full */
	bool		unsorted;		/* an order came before an earlier one */
	MoneySum	sums[NUM_SUMS];
} ProfileEntry;

typedef struct ProfilePass
{
	MemoryContext cxt;			/* everything below lives here */
	MemoryContext row_cxt;		/* reset for every returned row */
	HTAB	   *hash;
	Oid			key_type;
	int16		key_len;
	bool		key_byval;
	char		key_align;
	Oid			key_collation;
	FmgrInfo	hash_fn;
	FmgrInfo	eq_fn;

	/* money */
	bool		exact;			/* sums are scaled integers */
	int			scale;			/* their decimal scale */
	int			max_dscale;		/* largest display scale seen */
	Numeric		zero;			/* in numeric mode, the value of a NULL sum */

	/* the clock */
	TimestampTz now;
	TimestampTz since_90d;
	TimestampTz since_365d;
	TimestampTz quarter_start;
	TimestampTz quarter_end;
	pg_tz	   *default_tz;

	/* categories */
	int			ncategories;
	char	   *category_names[MAX_CATEGORIES];
	bool		categories_bound;
	bool		categories_overflow;

	/* output */
	bool		full;
	ProfileEntry **entries;
	int64		nentries;
	int64		next;
	TimestampTz r_thresholds[4];
	int32		f_thresholds[4];
	MoneySum	m_thresholds[4];
	Numeric		vip_threshold;
	Numeric		gold_threshold;
	Numeric		points_per_unit;
	TupleDesc	tupdesc;
} ProfilePass;

/* the pass the dynahash callbacks work for */
static ProfilePass *current_pass = NULL;

/* counts of the last pass in this session, for automation._profile_pass_counts() */
static int64 last_orders_read = 0;
static int64 last_skipped_customer = 0;
static int64 last_skipped_time = 0;
static int64 last_skipped_total = 0;

static const double quintiles[4] = {0.2, 0.4, 0.6, 0.8};

/*
 * Hash and match callbacks for dynahash: the key is a Datum of the shop's
 * customer key type, hashed and compared through its default hash opclass.
 */
static uint32
entry_hash(const void *key, Size keysize)
{
	return DatumGetUInt32(FunctionCall1Coll(&current_pass->hash_fn,
											current_pass->key_collation,
											*(const Datum *) key));
}

static int
entry_match(const void *key1, const void *key2, Size keysize)
{
	Datum		a = *(const Datum *) key1;
	Datum		b = *(const Datum *) key2;

	if (current_pass->key_byval && a == b)
		return 0;
	return DatumGetBool(FunctionCall2Coll(&current_pass->eq_fn,
										  current_pass->key_collation,
										  a, b)) ? 0 : 1;
}

/*
 * Finds the entry of a customer, creating it when create is true (and
 * returning NULL for an unknown customer otherwise).
 */
static ProfileEntry *
lookup_entry(ProfilePass *pass, Datum key, bool create)
{
	ProfileEntry *e;
	bool		found;

	e = hash_search(pass->hash, &key, create ? HASH_ENTER : HASH_FIND, &found);
	if (e == NULL || found)
		return e;

	/* a new entry: own a copy of the key, start empty */
	memset(((char *) e) + sizeof(Datum), 0, sizeof(ProfileEntry) - sizeof(Datum));
	if (!pass->key_byval)
	{
		MemoryContext old = MemoryContextSwitchTo(pass->cxt);

		e->key = datumCopy(key, false, pass->key_len);
		MemoryContextSwitchTo(old);
	}
	return e;
}

/*
 * Reads a numeric as an integer scaled by 10^scale, straight from its stored
 * form (base-10000 digits, a weight and a sign).  Returns false when it is
 * NaN or infinite (*special set), or does not fit the scale or 128 bits.
 */
static bool
numeric_to_scaled(Datum d, int scale, int128 *out, int *dscale, bool *special)
{
	struct varlena *v = (struct varlena *) PG_DETOAST_DATUM_PACKED(d);
	const char *data = VARDATA_ANY(v);
	Size		len = VARSIZE_ANY_EXHDR(v);
	uint16		header;
	int			weight;
	bool		negative;
	int			ndigits;
	const char *digits;
	int128		value = 0;
	static const int32 pow10[] = {1, 10, 100, 1000, 10000};

	*special = false;
	memcpy(&header, data, sizeof(uint16));
	if ((header & 0xC000) == 0xC000)
	{
		*special = true;		/* NaN or an infinity */
		return false;
	}
	if (header & 0x8000)
	{
		/* short format */
		negative = (header & 0x2000) != 0;
		*dscale = (header & 0x1F80) >> 7;
		weight = (header & 0x0040) ? (~0x003F | (header & 0x003F)) : (header & 0x003F);
		digits = data + sizeof(uint16);
		ndigits = (len - sizeof(uint16)) / sizeof(int16);
	}
	else
	{
		int16		w;

		negative = (header & 0xC000) == 0x4000;
		*dscale = header & 0x3FFF;
		memcpy(&w, data + sizeof(uint16), sizeof(int16));
		weight = w;
		digits = data + sizeof(uint16) + sizeof(int16);
		ndigits = (len - sizeof(uint16) - sizeof(int16)) / sizeof(int16);
	}

	for (int i = 0; i < ndigits; i++)
	{
		int16		digit;
		int			p10 = 4 * (weight - i) + scale;

		memcpy(&digit, digits + i * sizeof(int16), sizeof(int16));
		if (digit == 0)
			continue;
		if (p10 >= 0)
		{
			int128		term = digit;

			if (p10 > 32)
				return false;
			for (int k = 0; k < p10; k++)
				term *= 10;
			value += term;
		}
		else
		{
			if (p10 < -4 || digit % pow10[-p10] != 0)
				return false;
			value += digit / pow10[-p10];
		}
	}
	*out = negative ? -value : value;
	return true;
}

/* The first two bytes of a numeric's stored form: its sign and format. */
static uint16
numeric_header(Datum d)
{
	struct varlena *v = (struct varlena *) PG_DETOAST_DATUM_PACKED(d);
	uint16		header;

	memcpy(&header, VARDATA_ANY(v), sizeof(uint16));
	return header;
}

static bool
numeric_is_special(Datum d)
{
	return (numeric_header(d) & 0xC000) == 0xC000;
}

static bool
numeric_is_negative(Datum d)
{
	uint16		header = numeric_header(d);

	if ((header & 0xC000) == 0xC000)
		return false;
	if (header & 0x8000)
		return (header & 0x2000) != 0;
	return (header & 0xC000) == 0x4000;
}

/* Converts a scaled integer to a numeric with the given display scale. */
static Numeric
scaled_to_numeric(int128 value, int scale, int dscale)
{
	char		buf[64];
	char	   *p = buf + sizeof(buf) - 1;
	bool		negative = value < 0;
	uint128		u;

	for (int k = dscale; k < scale; k++)
		value /= 10;			/* exact: no value had digits there */
	if (value >= PG_INT64_MIN && value <= PG_INT64_MAX)
		return int64_div_fast_to_numeric((int64) value, dscale);

	u = negative ? -(uint128) value : (uint128) value;
	*p = '\0';
	for (int k = 0; u > 0 || k <= dscale; k++)
	{
		if (k == dscale && k > 0)
			*--p = '.';
		*--p = '0' + (int) (u % 10);
		u /= 10;
	}
	if (negative)
		*--p = '-';
	return DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(p),
											   ObjectIdGetDatum(InvalidOid),
											   Int32GetDatum(-1)));
}

/* A sum as a numeric; in numeric mode an untouched sum (NULL) is zero. */
static Numeric
sum_to_numeric(ProfilePass *pass, MoneySum *s)
{
	if (pass->exact)
		return scaled_to_numeric(s->scaled, pass->scale, Min(pass->max_dscale, pass->scale));
	return s->num ? s->num : pass->zero;
}

/*
 * Switches the pass from scaled integers to numeric arithmetic, converting
 * every sum so far: a value came that does not fit the scale.
 */
static void
switch_to_numeric(ProfilePass *pass)
{
	HASH_SEQ_STATUS seq;
	ProfileEntry *e;
	MemoryContext old = MemoryContextSwitchTo(pass->cxt);

	pass->zero = int64_to_numeric(0);
	hash_seq_init(&seq, pass->hash);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		for (int i = 0; i < NUM_SUMS; i++)
			e->sums[i].num = e->sums[i].scaled == 0 ? NULL :
				scaled_to_numeric(e->sums[i].scaled, pass->scale, pass->scale);
	}
	pass->exact = false;
	MemoryContextSwitchTo(old);
}

static void
add_money(ProfilePass *pass, MoneySum *s, int128 scaled, Numeric num)
{
	if (pass->exact)
		s->scaled += scaled;
	else
	{
		Numeric		old = s->num;
		MemoryContext oldcxt = MemoryContextSwitchTo(pass->cxt);

		if (old == NULL)
			s->num = DatumGetNumericCopy(NumericGetDatum(num));
		else
		{
			s->num = numeric_add_opt_error(old, num, NULL);
			pfree(old);
		}
		MemoryContextSwitchTo(oldcxt);
	}
}

/* The hour of day of a moment in a time zone. */
static int
local_hour(TimestampTz t, pg_tz *tz)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			tzoff;

	if (timestamp2tm(t, &tzoff, &tm, &fsec, NULL, tz) != 0)
		return 0;
	return tm.tm_hour;
}

/*
 * Opens a cursor over one of the pass's queries with the customer keys
 * (or NULL) as $1, and calls fn for every row, fetching in batches.
 */
typedef void (*row_fn) (ProfilePass *pass, HeapTuple tuple, TupleDesc desc);

static void
for_each_row(ProfilePass *pass, const char *query, Datum keys, bool keys_null, Oid keys_type, row_fn fn)
{
	Portal		portal;
	Oid			argtypes[1] = {keys_type};
	Datum		values[1] = {keys};
	char		nulls[1] = {keys_null ? 'n' : ' '};

	portal = SPI_cursor_open_with_args(NULL, query, 1, argtypes, values, nulls, true, 0);
	for (;;)
	{
		MemoryContext old;

		SPI_cursor_fetch(portal, true, PROFILE_BATCH);
		if (SPI_processed == 0)
			break;
		old = MemoryContextSwitchTo(pass->row_cxt);

		for (uint64 i = 0; i < SPI_processed; i++)
			fn(pass, SPI_tuptable->vals[i], SPI_tuptable->tupdesc);
		MemoryContextSwitchTo(old);
		MemoryContextReset(pass->row_cxt);
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_freetuptable(SPI_tuptable);
	SPI_cursor_close(portal);
}

/* zones: customer, time zone name */
static void
zone_row(ProfilePass *pass, HeapTuple tuple, TupleDesc desc)
{
	bool		isnull;
	Datum		key = SPI_getbinval(tuple, desc, 1, &isnull);
	char	   *name;
	pg_tz	   *tz;

	if (isnull)
		return;
	name = SPI_getvalue(tuple, desc, 2);
	if (name == NULL)
		return;
	tz = pg_tzset(name);
	pfree(name);
	if (tz != NULL)
		lookup_entry(pass, key, true)->tz = tz;
}

/* what an order row says, or why it does not count */
typedef struct OrderRow
{
	Datum		key;
	TimestampTz at;
	int128		scaled;
	Numeric		num;
} OrderRow;

static Oid	order_total_type;

static bool
read_order(ProfilePass *pass, HeapTuple tuple, TupleDesc desc, OrderRow *row, bool count_skips)
{
	bool		isnull;
	bool		negative = false;
	Datum		total;

	row->key = SPI_getbinval(tuple, desc, 1, &isnull);
	if (isnull)
	{
		if (count_skips)
			last_skipped_customer++;
		return false;
	}
	row->at = DatumGetTimestampTz(SPI_getbinval(tuple, desc, 2, &isnull));
	if (isnull)
	{
		if (count_skips)
			last_skipped_time++;
		return false;
	}
	total = SPI_getbinval(tuple, desc, 3, &isnull);
	row->num = NULL;
	row->scaled = 0;
	if (!isnull)
	{
		switch (order_total_type)
		{
			case INT2OID:
				row->scaled = DatumGetInt16(total);
				break;
			case INT4OID:
				row->scaled = DatumGetInt32(total);
				break;
			case INT8OID:
				row->scaled = DatumGetInt64(total);
				break;
			case FLOAT4OID:
			case FLOAT8OID:
				{
					double		f = order_total_type == FLOAT4OID ? DatumGetFloat4(total) : DatumGetFloat8(total);

					if (isnan(f) || isinf(f))
						isnull = true;
					else
						total = DirectFunctionCall1(float8_numeric, Float8GetDatum(f));
				}
				/* FALLTHROUGH */
			default:
				if (!isnull)
				{
					int			dscale;
					bool		special;

					if (numeric_is_special(total))
						isnull = true;
					else if (numeric_is_negative(total))
						negative = true;
					else if (pass->exact &&
							 numeric_to_scaled(total, pass->scale, &row->scaled, &dscale, &special))
						pass->max_dscale = Max(pass->max_dscale, dscale);
					else
					{
						if (pass->exact)
							switch_to_numeric(pass);
						row->scaled = 0;
						row->num = DatumGetNumeric(total);
					}
				}
				break;
		}
	}
	if (isnull || negative || row->scaled < 0)
	{
		if (count_skips)
			last_skipped_total++;
		return false;
	}
	/* orders after now have not happened yet as far as this pass knows */
	return row->at <= pass->now;
}

/* orders: customer, placed_at, total */
static void
order_row(ProfilePass *pass, HeapTuple tuple, TupleDesc desc)
{
	OrderRow	row;
	ProfileEntry *e;
	int			hour;

	if (!read_order(pass, tuple, desc, &row, true))
		return;
	last_orders_read++;
	e = lookup_entry(pass, row.key, true);

	if (e->count == 0)
		e->first_at = e->last_at = row.at;
	else if (row.at >= e->last_at)
	{
		double		gap = (double) (row.at - e->last_at) / USECS_PER_DAY;

		e->gap_sq += gap * gap;
		e->last_at = row.at;
	}
	else
	{
		e->unsorted = true;
		if (row.at < e->first_at)
			e->first_at = row.at;
	}
	e->count++;

	hour = local_hour(row.at, e->tz ? e->tz : pass->default_tz);
	if (e->hours[hour] == PG_UINT8_MAX)
	{
		for (int h = 0; h < 24; h++)
			e->hours[h] /= 2;
	}
	e->hours[hour]++;

	add_money(pass, &e->sums[SUM_TOTAL], row.scaled, row.num);
	if (row.at > pass->since_90d)
		add_money(pass, &e->sums[SUM_90D], row.scaled, row.num);
	if (row.at > pass->since_365d)
		add_money(pass, &e->sums[SUM_365D], row.scaled, row.num);
	if (row.at >= pass->quarter_start && row.at < pass->quarter_end)
		add_money(pass, &e->sums[SUM_PREV_QUARTER], row.scaled, row.num);
}

/* the orders of customers read out of order, again, sorted by time */
static void
gap_row(ProfilePass *pass, HeapTuple tuple, TupleDesc desc)
{
	OrderRow	row;
	ProfileEntry *e;

	if (!read_order(pass, tuple, desc, &row, false))
		return;
	e = lookup_entry(pass, row.key, false);
	if (e == NULL || !e->unsorted)
		return;
	if (e->last_at != PG_INT64_MIN)
	{
		double		gap = (double) (row.at - e->last_at) / USECS_PER_DAY;

		e->gap_sq += gap * gap;
	}
	e->last_at = row.at;
}

/* categories: customer, category number */
static void
category_row(ProfilePass *pass, HeapTuple tuple, TupleDesc desc)
{
	bool		isnull;
	Datum		key = SPI_getbinval(tuple, desc, 1, &isnull);
	ProfileEntry *e;
	int32		no;

	if (isnull)
		return;
	no = DatumGetInt32(SPI_getbinval(tuple, desc, 2, &isnull));
	if (isnull || no < 0)
		return;
	if (no >= MAX_CATEGORIES)
	{
		pass->categories_overflow = true;
		return;
	}
	e = lookup_entry(pass, key, false);
	if (e != NULL && e->count > 0)
		e->categories |= UINT64CONST(1) << no;
}

/* category names, in number order */
static void
category_name_row(ProfilePass *pass, HeapTuple tuple, TupleDesc desc)
{
	char	   *name = SPI_getvalue(tuple, desc, 1);

	if (name != NULL && pass->ncategories < MAX_CATEGORIES)
		pass->category_names[pass->ncategories++] = MemoryContextStrdup(pass->cxt, name);
}

/* comparators for the quintile thresholds */
static ProfilePass *sort_pass;

static int
cmp_recency(const void *a, const void *b)
{
	TimestampTz x = (*(ProfileEntry *const *) a)->last_at;
	TimestampTz y = (*(ProfileEntry *const *) b)->last_at;

	return x < y ? -1 : x > y ? 1 : 0;
}

static int
cmp_frequency(const void *a, const void *b)
{
	int32		x = (*(ProfileEntry *const *) a)->count;
	int32		y = (*(ProfileEntry *const *) b)->count;

	return x < y ? -1 : x > y ? 1 : 0;
}

static int
cmp_money(const MoneySum *x, const MoneySum *y)
{
	if (sort_pass->exact)
		return x->scaled < y->scaled ? -1 : x->scaled > y->scaled ? 1 : 0;
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp,
											 NumericGetDatum(x->num ? x->num : sort_pass->zero),
											 NumericGetDatum(y->num ? y->num : sort_pass->zero)));
}

static int
cmp_monetary(const void *a, const void *b)
{
	return cmp_money(&(*(ProfileEntry *const *) a)->sums[SUM_TOTAL],
					 &(*(ProfileEntry *const *) b)->sums[SUM_TOTAL]);
}

/*
 * The index of percentile_disc(p) in n sorted values, computed exactly as
 * PostgreSQL's percentile_disc does, so the SQL rescoring agrees.
 */
static int64
percentile_index(double p, int64 n)
{
	int64		rownum = (int64) ceil(p * n);

	return rownum > 1 ? rownum - 1 : 0;
}

/* Sorts the entries three ways and keeps the quintile thresholds. */
static void
compute_thresholds(ProfilePass *pass)
{
	sort_pass = pass;
	qsort(pass->entries, pass->nentries, sizeof(ProfileEntry *), cmp_recency);
	for (int k = 0; k < 4; k++)
		pass->r_thresholds[k] = pass->entries[percentile_index(quintiles[k], pass->nentries)]->last_at;
	qsort(pass->entries, pass->nentries, sizeof(ProfileEntry *), cmp_frequency);
	for (int k = 0; k < 4; k++)
		pass->f_thresholds[k] = pass->entries[percentile_index(quintiles[k], pass->nentries)]->count;
	qsort(pass->entries, pass->nentries, sizeof(ProfileEntry *), cmp_monetary);
	for (int k = 0; k < 4; k++)
		pass->m_thresholds[k] = pass->entries[percentile_index(quintiles[k], pass->nentries)]->sums[SUM_TOTAL];
}

/* The RFM group of a recency and a frequency score: see automation._rfm_group(). */
static const char *
rfm_group(int r, int f)
{
	if (r >= 4 && f >= 4)
		return "champions";
	if (r == 3 && f >= 4)
		return "loyal_customers";
	if (r <= 2 && f == 5)
		return "cant_lose";
	if (r <= 2 && f >= 3)
		return "at_risk";
	if (r >= 3 && f >= 2)
		return "potential_loyalist";
	if (r >= 4)
		return "recent_customers";
	if (r == 3)
		return "promising";
	if (r == 2)
		return "about_to_sleep";
	return "hibernating";
}

static Numeric
setting_numeric(double value)
{
	return DatumGetNumeric(DirectFunctionCall1(float8_numeric, Float8GetDatum(value)));
}

/* Builds the output row of one customer. */
static HeapTuple
build_row(ProfilePass *pass, ProfileEntry *e)
{
	Datum		values[PROFILE_NATTS];
	bool		nulls[PROFILE_NATTS];
	Numeric		sums[NUM_SUMS];
	int			best = 0;
	int64		days;
	double		mean_gap = 0;
	const char *stage;

	memset(nulls, 0, sizeof(nulls));
	for (int i = 0; i < NUM_SUMS; i++)
		sums[i] = sum_to_numeric(pass, &e->sums[i]);
	for (int h = 1; h < 24; h++)
		if (e->hours[h] > e->hours[best])
			best = h;

	values[0] = e->key;
	values[1] = TimestampTzGetDatum(e->first_at);
	values[2] = TimestampTzGetDatum(e->last_at);
	values[3] = Int32GetDatum(e->count);
	for (int i = 0; i < NUM_SUMS; i++)
		values[4 + i] = NumericGetDatum(sums[i]);
	if (e->count > 1)
	{
		int			gaps = e->count - 1;
		double		var;

		mean_gap = (double) (e->last_at - e->first_at) / USECS_PER_DAY / gaps;
		var = e->gap_sq / gaps - mean_gap * mean_gap;
		values[8] = Float8GetDatum(mean_gap);
		values[9] = Float8GetDatum(var > 0 ? sqrt(var) : 0.0);
	}
	else
		nulls[8] = nulls[9] = true;
	values[10] = Int16GetDatum(best);
	values[11] = CStringGetTextDatum(pg_get_timezone_name(e->tz ? e->tz : pass->default_tz));

	if (pass->full)
	{
		int			r = 1,
					f = 1,
					m = 1;

		for (int k = 0; k < 4; k++)
		{
			r += e->last_at > pass->r_thresholds[k];
			f += e->count > pass->f_thresholds[k];
			m += cmp_money(&e->sums[SUM_TOTAL], &pass->m_thresholds[k]) > 0;
		}
		values[12] = Int16GetDatum(r);
		values[13] = Int16GetDatum(f);
		values[14] = Int16GetDatum(m);
		values[15] = CStringGetTextDatum(rfm_group(r, f));
	}
	else
		nulls[12] = nulls[13] = nulls[14] = nulls[15] = true;

	days = (pass->now - e->last_at) / USECS_PER_DAY;
	if (days >= automation_lost_days)
		stage = "lost";
	else if ((double) days > fmax(automation_lapsing_factor * mean_gap, (double) automation_lapsing_min_days))
		stage = "lapsing";
	else if (e->count >= automation_loyal_orders)
		stage = "loyal";
	else if (e->count >= 2)
		stage = "returning";
	else
		stage = "new";
	values[16] = CStringGetTextDatum(stage);

	if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(sums[SUM_PREV_QUARTER]),
										  NumericGetDatum(pass->gold_threshold))) >= 0)
		values[17] = CStringGetTextDatum("gold");
	else if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(sums[SUM_PREV_QUARTER]),
											   NumericGetDatum(pass->vip_threshold))) >= 0)
		values[17] = CStringGetTextDatum("vip");
	else
		nulls[17] = true;

	values[18] = DirectFunctionCall1(numeric_int8,
									 DirectFunctionCall1(numeric_floor,
														 DirectFunctionCall2(numeric_mul,
																			 NumericGetDatum(sums[SUM_TOTAL]),
																			 NumericGetDatum(pass->points_per_unit))));

	if (pass->categories_bound)
	{
		Datum		names[MAX_CATEGORIES];
		int			n = 0;

		for (int c = 0; c < pass->ncategories; c++)
			if (e->categories & (UINT64CONST(1) << c))
				names[n++] = CStringGetTextDatum(pass->category_names[c]);
		values[19] = PointerGetDatum(construct_array(names, n, TEXTOID, -1, false, TYPALIGN_INT));
	}
	else
		nulls[19] = true;
	values[20] = TimestampTzGetDatum(pass->now);

	return heap_form_tuple(pass->tupdesc, values, nulls);
}

/*
 * Runs the pass: zones, orders, the gap fix-up, categories; then collects
 * the customers who ordered and, for a full pass, the RFM thresholds.
 */
static void
run_pass(ProfilePass *pass, FunctionCallInfo fcinfo)
{
	char	   *orders_query = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *zones_query = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *categories_query = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *category_names_query = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	Oid			keys_type = get_fn_expr_argtype(fcinfo->flinfo, 4);
	Datum		keys = PG_ARGISNULL(4) ? (Datum) 0 : PG_GETARG_DATUM(4);
	ArrayType  *windows = PG_GETARG_ARRAYTYPE_P(7);
	char	   *bound_by = NameStr(*PG_GETARG_NAME(8));
	Datum	   *w;
	bool	   *wnulls;
	int			nw;
	Oid			save_userid;
	int			save_sec;
	HASHCTL		ctl;
	SPIPlanPtr	plan;
	TypeCacheEntry *tce;
	TupleDesc	desc;
	int64		unsorted = 0;
	HASH_SEQ_STATUS seq;
	ProfileEntry *e;

	sort_pass = pass;
	deconstruct_array(windows, TIMESTAMPTZOID, sizeof(TimestampTz), true, TYPALIGN_DOUBLE, &w, &wnulls, &nw);
	if (nw != 4 || wnulls[0] || wnulls[1] || wnulls[2] || wnulls[3])
		elog(ERROR, "automation._profile_pass needs four windows");
	pass->since_90d = DatumGetTimestampTz(w[0]);
	pass->since_365d = DatumGetTimestampTz(w[1]);
	pass->quarter_start = DatumGetTimestampTz(w[2]);
	pass->quarter_end = DatumGetTimestampTz(w[3]);
	pass->default_tz = pg_tzset(automation_default_timezone);
	if (pass->default_tz == NULL)
		pass->default_tz = pg_tzset("UTC");
	pass->vip_threshold = setting_numeric(automation_vip_threshold);
	pass->gold_threshold = setting_numeric(automation_vip_gold_threshold);
	pass->points_per_unit = setting_numeric(automation_points_per_unit);

	last_orders_read = last_skipped_customer = last_skipped_time = last_skipped_total = 0;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* learn the key and amount types from the orders query itself */
	plan = SPI_prepare(orders_query, 1, &keys_type);
	if (plan == NULL)
		elog(ERROR, "cannot prepare the orders query: %s", SPI_result_code_string(SPI_result));
	{
		List	   *sources = SPI_plan_get_plan_sources(plan);
		CachedPlanSource *src = (CachedPlanSource *) linitial(sources);

		desc = src->resultDesc;
	}
	pass->key_type = TupleDescAttr(desc, 0)->atttypid;
	order_total_type = getBaseType(TupleDescAttr(desc, 2)->atttypid);
	if (order_total_type == NUMERICOID && TupleDescAttr(desc, 2)->atttypmod >= (int32) VARHDRSZ)
		pass->scale = Max(0, (int) (((TupleDescAttr(desc, 2)->atttypmod - VARHDRSZ) & 0x7ff) ^ 1024) - 1024);
	else if (order_total_type == INT2OID || order_total_type == INT4OID || order_total_type == INT8OID)
		pass->scale = 0;
	else
		pass->scale = 6;		/* unconstrained numeric, floats: switch if needed */
	pass->exact = true;
	pass->max_dscale = 0;

	get_typlenbyvalalign(pass->key_type, &pass->key_len, &pass->key_byval, &pass->key_align);
	tce = lookup_type_cache(getBaseType(pass->key_type), TYPECACHE_HASH_PROC_FINFO | TYPECACHE_EQ_OPR_FINFO);
	if (!OidIsValid(tce->hash_proc) || !OidIsValid(tce->eq_opr))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("customer key type %s cannot be hashed", format_type_be(pass->key_type))));
	fmgr_info_copy(&pass->hash_fn, &tce->hash_proc_finfo, pass->cxt);
	fmgr_info_copy(&pass->eq_fn, &tce->eq_opr_finfo, pass->cxt);
	pass->key_collation = type_is_collatable(pass->key_type) ? DEFAULT_COLLATION_OID : InvalidOid;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Datum);
	ctl.entrysize = sizeof(ProfileEntry);
	ctl.hash = entry_hash;
	ctl.match = entry_match;
	ctl.hcxt = pass->cxt;
	current_pass = pass;
	pass->hash = hash_create("automation profiles", 1024, &ctl,
							 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);

	/* read the shop with the privileges of the role that bound it */
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(get_role_oid(bound_by, false), save_sec | SECURITY_LOCAL_USERID_CHANGE);

	if (zones_query)
		for_each_row(pass, zones_query, keys, PG_ARGISNULL(4), keys_type, zone_row);
	for_each_row(pass, orders_query, keys, PG_ARGISNULL(4), keys_type, order_row);

	/* customers whose orders came out of time order: read them again, sorted */
	hash_seq_init(&seq, pass->hash);
	while ((e = hash_seq_search(&seq)) != NULL)
		if (e->unsorted)
			unsorted++;
	if (unsorted > 0)
	{
		Datum	   *ukeys = MemoryContextAllocHuge(pass->cxt, sizeof(Datum) * unsorted);
		int64		n = 0;
		ArrayType  *arr;
		MemoryContext old = MemoryContextSwitchTo(pass->cxt);

		hash_seq_init(&seq, pass->hash);
		while ((e = hash_seq_search(&seq)) != NULL)
			if (e->unsorted)
			{
				ukeys[n++] = e->key;
				e->gap_sq = 0;
				e->last_at = PG_INT64_MIN;
			}
		arr = construct_array(ukeys, n, pass->key_type, pass->key_len, pass->key_byval, pass->key_align);
		MemoryContextSwitchTo(old);
		for_each_row(pass, psprintf("SELECT * FROM (%s) q ORDER BY 2", orders_query),
					 PointerGetDatum(arr), false, keys_type, gap_row);
		pfree(arr);
		pfree(ukeys);
	}

	if (categories_query && category_names_query)
	{
		pass->categories_bound = true;
		for_each_row(pass, category_names_query, (Datum) 0, true, keys_type, category_name_row);
		for_each_row(pass, categories_query, keys, PG_ARGISNULL(4), keys_type, category_row);
		if (pass->categories_overflow)
			ereport(WARNING,
					(errmsg("customer profiles record only the first %d product categories", MAX_CATEGORIES),
					 errdetail("The shop's products have more categories than that; the others are left out of customer_profile.categories.")));
	}

	SetUserIdAndSecContext(save_userid, save_sec);
	SPI_finish();

	if (last_skipped_customer + last_skipped_time + last_skipped_total > 0)
		ereport(NOTICE,
				(errmsg("skipped %lld orders: %lld without a customer, %lld without a time, %lld with a missing or negative total",
						(long long) (last_skipped_customer + last_skipped_time + last_skipped_total),
						(long long) last_skipped_customer, (long long) last_skipped_time,
						(long long) last_skipped_total)));

	/* the customers who ordered */
	pass->entries = MemoryContextAllocHuge(pass->cxt, sizeof(ProfileEntry *) * Max(hash_get_num_entries(pass->hash), 1));
	hash_seq_init(&seq, pass->hash);
	while ((e = hash_seq_search(&seq)) != NULL)
		if (e->count > 0)
			pass->entries[pass->nentries++] = e;
	if (pass->full && pass->nentries > 0)
		compute_thresholds(pass);
}

/*
 * automation._profile_pass(orders_query, zones_query, categories_query,
 *                          category_names_query, keys, now, full_refresh,
 *                          windows, bound_by)
 *
 * Returns one automation.customer_profile row per customer with a counted
 * order.  windows: the start of the 90-day and 365-day windows and the
 * start and end of the previous quarter.
 */
Datum
automation_profile_pass(PG_FUNCTION_ARGS)
{
	FuncCallContext *funcctx;
	ProfilePass *pass;

	if (SRF_IS_FIRSTCALL())
	{
		MemoryContext old;
		TupleDesc	tupdesc;

		if (PG_ARGISNULL(0) || PG_ARGISNULL(5) || PG_ARGISNULL(6) || PG_ARGISNULL(7) || PG_ARGISNULL(8))
			elog(ERROR, "automation._profile_pass called with a NULL argument");

		funcctx = SRF_FIRSTCALL_INIT();
		old = MemoryContextSwitchTo(funcctx->multi_call_memory_ctx);
		if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "automation._profile_pass must return a composite type");
		if (tupdesc->natts != PROFILE_NATTS)
			elog(ERROR, "automation.customer_profile has %d columns, the profile pass writes %d",
				 tupdesc->natts, PROFILE_NATTS);
		pass = palloc0(sizeof(ProfilePass));
		pass->tupdesc = BlessTupleDesc(tupdesc);
		pass->cxt = AllocSetContextCreate(funcctx->multi_call_memory_ctx, "automation profile pass",
										  ALLOCSET_DEFAULT_SIZES);
		pass->row_cxt = AllocSetContextCreate(funcctx->multi_call_memory_ctx, "automation profile row",
											  ALLOCSET_DEFAULT_SIZES);
		pass->now = PG_GETARG_TIMESTAMPTZ(5);
		pass->full = PG_GETARG_BOOL(6);
		funcctx->user_fctx = pass;
		MemoryContextSwitchTo(old);

		run_pass(pass, fcinfo);
	}

	funcctx = SRF_PERCALL_SETUP();
	pass = funcctx->user_fctx;
	current_pass = pass;
	if (pass->next < pass->nentries)
	{
		MemoryContext old;
		HeapTuple	tuple;

		MemoryContextReset(pass->row_cxt);
		old = MemoryContextSwitchTo(pass->row_cxt);
		tuple = build_row(pass, pass->entries[pass->next++]);
		MemoryContextSwitchTo(old);
		SRF_RETURN_NEXT(funcctx, HeapTupleGetDatum(tuple));
	}
	MemoryContextDelete(pass->cxt);
	MemoryContextDelete(pass->row_cxt);
	current_pass = NULL;
	SRF_RETURN_DONE(funcctx);
}

/*
 * automation._profile_pass_counts(): the orders the last pass of this
 * session read and skipped; reading them clears them.
 */
Datum
automation_profile_pass_counts(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = Int64GetDatum(last_orders_read);
	values[1] = Int64GetDatum(last_skipped_customer);
	values[2] = Int64GetDatum(last_skipped_time);
	values[3] = Int64GetDatum(last_skipped_total);
	last_orders_read = last_skipped_customer = last_skipped_time = last_skipped_total = 0;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}
