/*-------------------------------------------------------------------------
 *
 * profile.c
 *	  The profile pass: one read of the shop's orders that produces a
 *	  customer profile for every customer who ordered.
 *
 * automation._profile_pass() runs the queries that automation.refresh_profiles()
 * builds from the bindings (sql/install/20_profile.sql) with the privileges
 * of the role that bound the orders, the rows streamed to a receiver rather
 * than copied out in batches.  Each customer gets a number, and fixed-size
 * state in an array of chunks by that number: first and last order, count,
 * four money sums, an hour-of-day histogram, the sum of squared gaps and a
 * bitmap of categories.  Integer customer keys are numbered through an
 * array indexed by the key itself (a hash table takes the few that are
 * negative or very large); other key types through a hash table that uses
 * the type's default hash opclass; the time zones of integer keys are kept
 * by key until their first order, so that customers who never ordered take
 * no state.  Orders and lines wait in batches of a few hundred, so that the
 * state of their customers, scattered in memory, is fetched ahead of use.
 * Money stays exact: amounts are
 * accumulated as 64-bit integers scaled to the column's decimal scale, and
 * the pass switches to numeric arithmetic if a value does not fit that scale
 * or a sum would overflow.  The hour of an order in its customer's time
 * zone comes from the zone's UTC offset, cached per zone for the span
 * between two of its transitions.
 *
 * Gaps between orders need each customer's orders in time order.  Orders
 * are often stored in the order they were placed, so the pass assumes it
 * and marks the customers for whom it was not true; the orders are then read
 * a second time, these customers' times kept (the first read counted them)
 * and sorted per customer, and their gap statistics computed from those.
 *
 * Categories come from the order lines.  A full pass over integer order
 * numbers remembers which customer each order belongs to (an array indexed
 * by the order number) and then reads the lines once, each with its
 * product's category number, without joining them to the orders; otherwise
 * (and for the few customers of an incremental pass, whose lines are reached
 * through an index) a query joins lines to orders.
 *
 * A full pass also computes the RFM quintile thresholds over the whole
 * population and scores every customer; an incremental pass leaves scores
 * NULL and the SQL side scores the customers it wrote.  The function
 * returns the rows value per call, so that INSERT ... SELECT streams them
 * without materialising the result.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/params.h"
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
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "automation.h"
#include "profile.h"

PG_FUNCTION_INFO_V1(automation_profile_pass);
PG_FUNCTION_INFO_V1(automation_profile_pass_counts);
PG_FUNCTION_INFO_V1(automation_profile_pass_thresholds);

#define PROFILE_NATTS		22
#define MAX_CATEGORIES		64
/* the receiver's per-row memory is reset every so many rows */
#define ROWS_PER_RESET		10000
/* integer keys and order numbers below this are looked up in an array */
#define DIRECT_KEYS			(64 * 1024 * 1024)
/* customers' state is kept in chunks of this many */
#define CHUNK_BITS			13
#define CHUNK_SIZE			(1 << CHUNK_BITS)
/* orders and lines are taken in batches of this many, to fetch state ahead */
#define BATCH_SIZE			256
/* at most this many distinct time zones are told apart */
#define MAX_ZONES			PG_UINT16_MAX

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
	int64		scaled;			/* amount x 10^scale, while pass->exact */
	Numeric		num;			/* otherwise */
} MoneySum;

/* Per-customer state: fixed size (112 bytes). */
typedef struct ProfileEntry
{
	Datum		key;
	TimestampTz first_at;
	TimestampTz last_at;
	TimestampTz window_at;		/* when an order next enters or leaves a window */
	double		gap_sq;			/* sum of squared gaps in days */
	uint64		categories;		/* bit i: category i of the pass */
	MoneySum	sums[NUM_SUMS];
	int32		count;
	uint16		zone;			/* 1 + index in pass->zones; 0: the default */
	bool		unsorted;		/* an order came before an earlier one */
	uint8		hours[24];		/* orders by local hour, halved when full */
} ProfileEntry;

/* A span of time in which a zone's UTC offset holds: from <= t < until. */
typedef struct ZoneSpan
{
	pg_time_t	from;
	pg_time_t	until;
	long		gmtoff;
} ZoneSpan;

/* A time zone, and the spans of it met so far, in time order. */
typedef struct Zone
{
	pg_tz	   *tz;
	ZoneSpan   *spans;
	int			nspans;
	int			last;			/* the span of the previous lookup */
} Zone;

/*
 * Numbers by integer: small non-negative integers through an array of
 * number + 1 (0: none), the others through a hash table.
 */
typedef struct IntMap
{
	uint32	   *direct;
	uint64		cap;
	HTAB	   *hash;
} IntMap;

typedef struct IntMapEntry
{
	int64		key;
	uint32		value;
} IntMapEntry;

/* Numbers by key of any hashable type. */
typedef struct KeyMapEntry
{
	Datum		key;
	uint32		value;
} KeyMapEntry;

/* Numbers by time zone. */
typedef struct ZoneMapEntry
{
	pg_tz	   *tz;
	uint16		zone;
} ZoneMapEntry;

/* an order read and not yet added to its customer */
typedef struct PendingOrder
{
	Datum		key;
	TimestampTz at;
	int64		scaled;
	int64		order_no;
	uint32		id;
	bool		counts;			/* not skipped, not after now */
	bool		future;			/* not skipped, after now */
	bool		has_order_no;
} PendingOrder;

/* a line read and not yet added to its customer */
typedef struct PendingLine
{
	ProfileEntry *entry;
	int32		category;
} PendingLine;

typedef struct ProfilePass
{
	MemoryContext cxt;			/* everything below lives here */
	MemoryContext row_cxt;		/* reset every so many rows, and per returned row */
	uint64		rows_since_reset;

	/* the customers: key type, numbers, state */
	Oid			key_type;
	int16		key_len;
	bool		key_byval;
	char		key_align;
	Oid			key_collation;
	bool		key_is_int;
	FmgrInfo	hash_fn;
	FmgrInfo	eq_fn;
	IntMap		int_keys;		/* for integer keys */
	uint16	   *zone_by_key;	/* integer keys' zones, read before their orders */
	uint64		zone_by_key_cap;
	HTAB	   *keys;			/* for the others */
	ProfileEntry **chunks;
	uint32		nchunks;
	uint32		chunks_cap;
	uint32		n;				/* customers numbered */

	/* the customer of each order (+ 1), when categories come from the lines */
	bool		map_orders;
	IntMap		orders;
	/* the category of each product (+ 1), when the lines give products */
	bool		map_products;
	IntMap		products;
	int64		last_order_no;	/* the order of the previous line, and its customer */
	ProfileEntry *last_order_entry;

	/*
	 * Orders (with integer keys, while sums are exact) and lines wait in
	 * batches, so that the state of their customers can be fetched ahead.
	 */
	PendingOrder pending[BATCH_SIZE];
	int			npending;
	bool		gap_mode;		/* the batch holds orders read again for gaps */
	PendingLine pending_lines[BATCH_SIZE];
	int			npending_lines;

	/* the order times of the customers whose orders came out of time order */
	uint32	   *times_next;		/* by customer: where its next time goes */
	TimestampTz *times;
	uint64		times_len;		/* how many times fit */

	/* money */
	Oid			total_type;
	bool		exact;			/* sums are scaled integers */
	int			scale;			/* their decimal scale */
	int			max_dscale;		/* largest display scale seen */
	Numeric		zero;			/* in numeric mode, the value of a NULL sum */

	/* the clock and the time zones */
	TimestampTz now;
	TimestampTz since_90d;
	TimestampTz since_365d;
	TimestampTz quarter_start;
	TimestampTz quarter_end;
	Zone		default_zone;
	Zone	   *zones;
	int			nzones;
	HTAB	   *zone_map;

	/* categories */
	int			ncategories;
	char	   *category_names[MAX_CATEGORIES];
	bool		categories_bound;
	bool		categories_overflow;

	/* counts */
	int64		orders_read;
	int64		skipped_customer;
	int64		skipped_time;
	int64		skipped_total;

	/* output */
	bool		full;
	uint32	   *output;			/* the customers in key order, for integer keys */
	uint32		next;
	TimestampTz r_thresholds[4];
	int32		f_thresholds[4];
	MoneySum	m_thresholds[4];
	Numeric		vip_threshold;
	Numeric		gold_threshold;
	Numeric		points_per_unit;
	Numeric		points_max;		/* the most points a bigint holds */
	Numeric		points_min;
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
 * The RFM thresholds of the last full pass in this session, and where each
 * falls among the profiles (how many values are below it, how many up to
 * it), for automation._profile_pass_thresholds().
 */
enum
{
	MEASURE_R,
	MEASURE_F,
	MEASURE_M,
	NUM_MEASURES
};
static bool last_thresholds_valid = false;
static int64 last_profiles = 0;
static TimestampTz last_r[4];
static int32 last_f[4];
static Numeric last_m[4];
static int64 last_below[NUM_MEASURES][4];
static int64 last_upto[NUM_MEASURES][4];

/*
 * Hash and match callbacks for dynahash: the key is a Datum of the shop's
 * customer key type, hashed and compared through its default hash opclass.
 */
static uint32
key_hash(const void *key, Size keysize)
{
	return DatumGetUInt32(FunctionCall1Coll(&current_pass->hash_fn,
											current_pass->key_collation,
											*(const Datum *) key));
}

static int
key_match(const void *key1, const void *key2, Size keysize)
{
	Datum		a = *(const Datum *) key1;
	Datum		b = *(const Datum *) key2;

	if (current_pass->key_byval && a == b)
		return 0;
	return DatumGetBool(FunctionCall2Coll(&current_pass->eq_fn,
										  current_pass->key_collation,
										  a, b)) ? 0 : 1;
}

static bool
is_int_type(Oid type)
{
	return type == INT8OID || type == INT4OID || type == INT2OID;
}

static int64
int_value(Datum value, Oid type)
{
	return type == INT8OID ? DatumGetInt64(value) : type == INT4OID ? DatumGetInt32(value) : DatumGetInt16(value);
}

/* The number + 1 an integer is mapped to, or 0. */
static inline uint32
intmap_get(IntMap *m, int64 k)
{
	if (k >= 0 && (uint64) k < m->cap)
		return m->direct[k];
	if (m->hash != NULL && (k < 0 || k >= DIRECT_KEYS))
	{
		IntMapEntry *e = hash_search(m->hash, &k, HASH_FIND, NULL);

		return e ? e->value : 0;
	}
	return 0;
}

/* Maps an integer to value (a number + 1). */
static void
intmap_set(ProfilePass *pass, IntMap *m, int64 k, uint32 value)
{
	if (k >= 0 && k < DIRECT_KEYS)
	{
		if ((uint64) k >= m->cap)
		{
			/* grow by a quarter at least: keys are usually dense */
			uint64		newcap = Min(Max((uint64) k + 1, m->cap + m->cap / 4 + 1024), DIRECT_KEYS);

			m->direct = m->direct == NULL ? MemoryContextAllocHuge(pass->cxt, newcap * sizeof(uint32))
				: repalloc_huge(m->direct, newcap * sizeof(uint32));
			memset(m->direct + m->cap, 0, (newcap - m->cap) * sizeof(uint32));
			m->cap = newcap;
		}
		m->direct[k] = value;
	}
	else
	{
		IntMapEntry *e;

		if (m->hash == NULL)
		{
			HASHCTL		ctl;

			memset(&ctl, 0, sizeof(ctl));
			ctl.keysize = sizeof(int64);
			ctl.entrysize = sizeof(IntMapEntry);
			ctl.hcxt = pass->cxt;
			m->hash = hash_create("automation profile numbers", 1024, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		}
		e = hash_search(m->hash, &k, HASH_ENTER, NULL);
		e->value = value;
	}
}

static inline ProfileEntry *
entry_at(ProfilePass *pass, uint32 id)
{
	return &pass->chunks[id >> CHUNK_BITS][id & (CHUNK_SIZE - 1)];
}

/* Numbers a new customer and gives it empty state. */
static uint32
new_entry(ProfilePass *pass, Datum key)
{
	uint32		id = pass->n;
	ProfileEntry *e;

	if (id == PG_UINT32_MAX - 1)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many customers for the profile pass")));
	if ((id >> CHUNK_BITS) >= pass->nchunks)
	{
		if (pass->nchunks == pass->chunks_cap)
		{
			pass->chunks_cap = Max(pass->chunks_cap * 2, 64);
			pass->chunks = pass->chunks == NULL
				? MemoryContextAlloc(pass->cxt, sizeof(ProfileEntry *) * pass->chunks_cap)
				: repalloc(pass->chunks, sizeof(ProfileEntry *) * pass->chunks_cap);
		}
		pass->chunks[pass->nchunks++] = MemoryContextAllocHuge(pass->cxt, sizeof(ProfileEntry) * CHUNK_SIZE);
	}
	pass->n++;
	e = entry_at(pass, id);
	memset(e, 0, sizeof(ProfileEntry));
	e->window_at = DT_NOEND;
	if (pass->zone_by_key != NULL)
	{
		int64		k = int_value(key, pass->key_type);

		if (k >= 0 && (uint64) k < pass->zone_by_key_cap)
			e->zone = pass->zone_by_key[k];
	}
	if (pass->key_byval)
		e->key = key;
	else
	{
		MemoryContext old = MemoryContextSwitchTo(pass->cxt);

		e->key = datumCopy(key, false, pass->key_len);
		MemoryContextSwitchTo(old);
	}
	return id;
}

/*
 * The number + 1 of a customer, numbering it when create is true (0 for an
 * unknown customer otherwise).
 */
static uint32
lookup_id(ProfilePass *pass, Datum key, bool create)
{
	uint32		id;

	if (pass->key_is_int)
	{
		int64		k = int_value(key, pass->key_type);

		id = intmap_get(&pass->int_keys, k);
		if (id == 0 && create)
		{
			id = new_entry(pass, key) + 1;
			intmap_set(pass, &pass->int_keys, k, id);
		}
	}
	else
	{
		KeyMapEntry *m;
		bool		found;

		m = hash_search(pass->keys, &key, create ? HASH_ENTER : HASH_FIND, &found);
		if (m == NULL)
			return 0;
		if (!found)
		{
			m->value = new_entry(pass, key) + 1;
			m->key = entry_at(pass, m->value - 1)->key;	/* the entry's own copy */
		}
		id = m->value;
	}
	return id;
}

static inline ProfileEntry *
lookup_entry(ProfilePass *pass, Datum key, bool create)
{
	uint32		id = lookup_id(pass, key, create);

	return id == 0 ? NULL : entry_at(pass, id - 1);
}

/*
 * Reads a numeric as an integer scaled by 10^scale, straight from its stored
 * form (base-10000 digits, a weight and a sign).  Returns false when it is
 * NaN or infinite (*special set), or does not fit the scale or 64 bits.
 */
static bool
numeric_to_scaled(Datum d, int scale, int64 *out, int *dscale, bool *special)
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

			if (p10 > 18)
				return false;
			for (int k = 0; k < p10; k++)
				term *= 10;
			value += term;
			if (value > PG_INT64_MAX)
				return false;
		}
		else
		{
			if (p10 < -4 || digit % pow10[-p10] != 0)
				return false;
			value += digit / pow10[-p10];
		}
	}
	if (value > PG_INT64_MAX)
		return false;
	*out = negative ? -(int64) value : (int64) value;
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
scaled_to_numeric(int64 value, int scale, int dscale)
{
	for (int k = dscale; k < scale; k++)
		value /= 10;			/* exact: no value had digits there */
	return int64_div_fast_to_numeric(value, dscale);
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
 * every sum so far: a value came that does not fit the scale, or a sum
 * would not fit 64 bits.
 */
static void
switch_to_numeric(ProfilePass *pass)
{
	MemoryContext old = MemoryContextSwitchTo(pass->cxt);

	pass->zero = int64_to_numeric(0);
	for (uint32 id = 0; id < pass->n; id++)
	{
		ProfileEntry *e = entry_at(pass, id);

		for (int i = 0; i < NUM_SUMS; i++)
			e->sums[i].num = e->sums[i].scaled == 0 ? NULL :
				scaled_to_numeric(e->sums[i].scaled, pass->scale, pass->scale);
	}
	pass->exact = false;
	MemoryContextSwitchTo(old);
}

static void
add_numeric(ProfilePass *pass, MoneySum *s, Numeric num)
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

/*
 * The UTC offset of a zone at a moment.  The zone's transitions split time
 * into spans of one offset; each span met is kept, from the earliest moment
 * looked up in it to its end, so that most lookups find one.
 */
static bool
zone_offset(ProfilePass *pass, Zone *z, pg_time_t secs, long *gmtoff)
{
	int			lo = 0,
				hi = z->nspans;
	long		before_gmtoff,
				after_gmtoff;
	int			before_isdst,
				after_isdst;
	pg_time_t	boundary = 0;
	pg_time_t	until;
	int			r;
	struct pg_tm *tm;

	if (z->last < z->nspans && secs >= z->spans[z->last].from && secs < z->spans[z->last].until)
	{
		*gmtoff = z->spans[z->last].gmtoff;
		return true;
	}
	/* the first span that ends after secs */
	while (lo < hi)
	{
		int			mid = (lo + hi) / 2;

		if (z->spans[mid].until <= secs)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < z->nspans && secs >= z->spans[lo].from)
	{
		z->last = lo;
		*gmtoff = z->spans[lo].gmtoff;
		return true;
	}

	r = pg_next_dst_boundary(&secs, &before_gmtoff, &before_isdst, &boundary,
							 &after_gmtoff, &after_isdst, z->tz);
	if (r < 0 || (r == 1 && boundary <= secs))
		return false;
	/* take the span only when it agrees with the zone's local time here */
	tm = pg_localtime(&secs, z->tz);
	if (tm == NULL || tm->tm_gmtoff != before_gmtoff)
		return false;
	until = r == 1 ? boundary : PG_INT64_MAX;
	if (lo < z->nspans && z->spans[lo].until == until)
		z->spans[lo].from = secs;	/* the same span, met earlier */
	else
	{
		if ((z->nspans & 7) == 0)
			z->spans = z->spans == NULL ? MemoryContextAlloc(pass->cxt, sizeof(ZoneSpan) * 8)
				: repalloc(z->spans, sizeof(ZoneSpan) * (z->nspans + 8));
		memmove(z->spans + lo + 1, z->spans + lo, sizeof(ZoneSpan) * (z->nspans - lo));
		z->spans[lo].from = secs;
		z->spans[lo].until = until;
		z->spans[lo].gmtoff = before_gmtoff;
		z->nspans++;
	}
	z->last = lo;
	*gmtoff = before_gmtoff;
	return true;
}

/* The hour of day of a moment in a time zone. */
static int
local_hour(ProfilePass *pass, Zone *z, TimestampTz t)
{
	pg_time_t	secs;
	long		gmtoff;
	struct pg_tm tm;
	fsec_t		fsec;
	int			tzoff;

	/* whole seconds since the Unix epoch, rounded down */
	secs = t / USECS_PER_SEC - (t % USECS_PER_SEC < 0 ? 1 : 0)
		+ (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
	if (zone_offset(pass, z, secs, &gmtoff))
	{
		int64		local = (secs + gmtoff) % SECS_PER_DAY;

		if (local < 0)
			local += SECS_PER_DAY;
		return (int) (local / SECS_PER_HOUR);
	}
	if (timestamp2tm(t, &tzoff, &tm, &fsec, NULL, z->tz) != 0)
		return 0;
	return tm.tm_hour;
}

/* The number of a time zone, adding it to the pass's list. */
static uint16
zone_number(ProfilePass *pass, pg_tz *tz)
{
	ZoneMapEntry *m;
	bool		found;

	if (pass->zone_map == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(pg_tz *);
		ctl.entrysize = sizeof(ZoneMapEntry);
		ctl.hcxt = pass->cxt;
		pass->zone_map = hash_create("automation profile zones", 64, &ctl,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		pass->zones = MemoryContextAllocZero(pass->cxt, sizeof(Zone) * 64);
	}
	m = hash_search(pass->zone_map, &tz, HASH_ENTER, &found);
	if (!found)
	{
		if (pass->nzones == MAX_ZONES)
		{
			hash_search(pass->zone_map, &tz, HASH_REMOVE, NULL);
			return 0;
		}
		if (pass->nzones >= 64 && (pass->nzones & (pass->nzones - 1)) == 0)
		{
			pass->zones = repalloc(pass->zones, sizeof(Zone) * pass->nzones * 2);
			memset(pass->zones + pass->nzones, 0, sizeof(Zone) * pass->nzones);
		}
		pass->zones[pass->nzones].tz = tz;
		m->zone = ++pass->nzones;
	}
	return m->zone;
}

static inline Zone *
entry_zone(ProfilePass *pass, ProfileEntry *e)
{
	return e->zone == 0 ? &pass->default_zone : &pass->zones[e->zone - 1];
}

/*
 * Runs one of the pass's queries with the customer keys (or NULL) as $1,
 * streaming every row to fn.
 */
typedef void (*row_fn) (ProfilePass *pass, TupleTableSlot *slot);

typedef struct PassReceiver
{
	DestReceiver pub;
	ProfilePass *pass;
	row_fn		fn;
} PassReceiver;

static bool
receiver_receive(TupleTableSlot *slot, DestReceiver *self)
{
	PassReceiver *r = (PassReceiver *) self;
	ProfilePass *pass = r->pass;
	MemoryContext old = MemoryContextSwitchTo(pass->row_cxt);

	r->fn(pass, slot);
	MemoryContextSwitchTo(old);
	if (++pass->rows_since_reset == ROWS_PER_RESET)
	{
		MemoryContextReset(pass->row_cxt);
		pass->rows_since_reset = 0;
		CHECK_FOR_INTERRUPTS();
	}
	return true;
}

static void
receiver_startup(DestReceiver *self, int operation, TupleDesc desc)
{
}

static void
receiver_noop(DestReceiver *self)
{
}

static void
for_each_row(ProfilePass *pass, const char *query, Datum keys, bool keys_null, Oid keys_type, row_fn fn)
{
	PassReceiver receiver;
	SPIExecuteOptions options;
	ParamListInfo params = makeParamList(1);
	int			rc;

	params->params[0].value = keys;
	params->params[0].isnull = keys_null;
	params->params[0].pflags = PARAM_FLAG_CONST;
	params->params[0].ptype = keys_type;

	memset(&receiver, 0, sizeof(receiver));
	receiver.pub.receiveSlot = receiver_receive;
	receiver.pub.rStartup = receiver_startup;
	receiver.pub.rShutdown = receiver_noop;
	receiver.pub.rDestroy = receiver_noop;
	receiver.pub.mydest = DestNone;
	receiver.pass = pass;
	receiver.fn = fn;
	memset(&options, 0, sizeof(options));
	options.params = params;
	options.read_only = true;
	options.dest = (DestReceiver *) &receiver;
	rc = SPI_execute_extended(query, &options);
	if (rc < 0)
		elog(ERROR, "a profile query failed: %s", SPI_result_code_string(rc));
	MemoryContextReset(pass->row_cxt);
	pass->rows_since_reset = 0;
}

/* zones: customer, time zone name */
static void
zone_row(ProfilePass *pass, TupleTableSlot *slot)
{
	bool		isnull;
	Datum		key = slot_getattr(slot, 1, &isnull);
	Datum		name;
	pg_tz	   *tz;
	uint16		zone;

	if (isnull)
		return;
	name = slot_getattr(slot, 2, &isnull);
	if (isnull)
		return;
	tz = automation_zone(TextDatumGetCString(name));
	if (tz == NULL)
		return;
	zone = zone_number(pass, tz);
	if (zone == 0)
		return;
	if (pass->key_is_int)
	{
		/* kept by key, so that customers who never ordered take no state */
		int64		k = int_value(key, pass->key_type);

		if (k >= 0 && k < DIRECT_KEYS)
		{
			if ((uint64) k >= pass->zone_by_key_cap)
			{
				uint64		newcap = Min(Max((uint64) k + 1, pass->zone_by_key_cap + pass->zone_by_key_cap / 4 + 1024), DIRECT_KEYS);

				pass->zone_by_key = pass->zone_by_key == NULL
					? MemoryContextAllocHuge(pass->cxt, newcap * sizeof(uint16))
					: repalloc_huge(pass->zone_by_key, newcap * sizeof(uint16));
				memset(pass->zone_by_key + pass->zone_by_key_cap, 0, (newcap - pass->zone_by_key_cap) * sizeof(uint16));
				pass->zone_by_key_cap = newcap;
			}
			pass->zone_by_key[k] = zone;
			return;
		}
	}
	lookup_entry(pass, key, true)->zone = zone;
}

/* what an order row says, or why it does not count */
typedef struct OrderRow
{
	Datum		key;
	TimestampTz at;
	int64		scaled;
	Numeric		num;
	bool		future;			/* placed after now: counts later */
} OrderRow;

static void flush_orders(ProfilePass *pass);

/* Reads customer, time and total; false when the order does not count. */
static bool
read_order(ProfilePass *pass, TupleTableSlot *slot, OrderRow *row, bool count_skips)
{
	bool		isnull;
	bool		negative = false;
	Datum		total;

	row->future = false;
	row->at = DatumGetTimestampTz(slot_getattr(slot, 2, &isnull));
	/* -infinity is no moment: the windows and next_change_at would overflow */
	if (isnull || TIMESTAMP_IS_NOBEGIN(row->at))
	{
		if (count_skips)
			pass->skipped_time++;
		return false;
	}
	total = slot_getattr(slot, 3, &isnull);
	row->num = NULL;
	row->scaled = 0;
	if (!isnull)
	{
		switch (pass->total_type)
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
					double		f = pass->total_type == FLOAT4OID ? DatumGetFloat4(total) : DatumGetFloat8(total);

					/* as the decimal it prints as: a real 0.1 is 0.1, not 0.100000001490116 */
					if (isnan(f) || isinf(f))
						isnull = true;
					else if (pass->total_type == FLOAT4OID)
						total = DirectFunctionCall1(float4_numeric, total);
					else
						total = DirectFunctionCall1(float8_numeric, total);
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
						{
							/* the waiting orders are added as they were read */
							flush_orders(pass);
							switch_to_numeric(pass);
						}
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
			pass->skipped_total++;
		return false;
	}
	/* orders after now have not happened yet as far as this pass knows */
	if (row->at > pass->now)
	{
		row->future = true;
		return false;
	}
	return true;
}

/* Adds an order's amount to the sums whose windows hold its time. */
static void
add_amount(ProfilePass *pass, ProfileEntry *e, OrderRow *row)
{
	bool		in[NUM_SUMS];

	in[SUM_TOTAL] = true;
	in[SUM_90D] = row->at > pass->since_90d;
	in[SUM_365D] = row->at > pass->since_365d;
	in[SUM_PREV_QUARTER] = row->at >= pass->quarter_start && row->at < pass->quarter_end;

	if (pass->exact)
	{
		int64		sums[NUM_SUMS];
		bool		overflow = false;

		for (int i = 0; i < NUM_SUMS; i++)
		{
			sums[i] = e->sums[i].scaled;
			if (in[i])
				overflow |= pg_add_s64_overflow(sums[i], row->scaled, &sums[i]);
		}
		if (!overflow)
		{
			for (int i = 0; i < NUM_SUMS; i++)
				e->sums[i].scaled = sums[i];
			return;
		}
		switch_to_numeric(pass);
	}
	/* an order read while the sums were still exact */
	if (row->num == NULL)
		row->num = scaled_to_numeric(row->scaled, pass->scale, pass->scale);
	for (int i = 0; i < NUM_SUMS; i++)
		if (in[i])
			add_numeric(pass, &e->sums[i], row->num);
}

/* Adds a counted order to its customer. */
static void
add_order(ProfilePass *pass, ProfileEntry *e, OrderRow *row)
{
	int			hour;

	pass->orders_read++;
	/* the order leaves the 90-day and the 365-day windows at these times */
	if (row->at > pass->since_90d)
		e->window_at = Min(e->window_at, row->at + (pass->now - pass->since_90d));
	if (row->at > pass->since_365d)
		e->window_at = Min(e->window_at, row->at + (pass->now - pass->since_365d));
	if (e->count == 0)
		e->first_at = e->last_at = row->at;
	else if (row->at >= e->last_at)
	{
		double		gap = (double) (row->at - e->last_at) / USECS_PER_DAY;

		e->gap_sq += gap * gap;
		e->last_at = row->at;
	}
	else
	{
		e->unsorted = true;
		if (row->at < e->first_at)
			e->first_at = row->at;
	}
	e->count++;

	hour = local_hour(pass, entry_zone(pass, e), row->at);
	if (e->hours[hour] == PG_UINT8_MAX)
	{
		for (int h = 0; h < 24; h++)
			e->hours[h] /= 2;
	}
	e->hours[hour]++;

	add_amount(pass, e, row);
}

/*
 * Adds the waiting orders to their customers: first the customers' numbers
 * are fetched ahead, then their state, then the orders are added in the
 * order they were read.
 */
/*
 * The orders are read twice in one snapshot, the second time for the
 * customers whose orders came out of time order; both reads must see the
 * same rows.  A bound view whose rows depend on a volatile function
 * (nextval, clock_timestamp, random) may not.
 */
static void
orders_changed(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("the bound orders gave other rows when the profile pass read them again"),
			 errdetail("The pass reads the orders twice in one snapshot and needs the same rows both times."),
			 errhint("Bind a table, or a view whose rows do not depend on a volatile function such as nextval(), clock_timestamp() or random().")));
}

/* keeps one order time of customer idx for its gaps, within the array */
static inline void
keep_time(ProfilePass *pass, uint32 idx, TimestampTz at)
{
	if (pass->times_next[idx] >= pass->times_len)
		orders_changed();
	pass->times[pass->times_next[idx]++] = at;
}

static void
flush_orders(ProfilePass *pass)
{
	int			n = pass->npending;

	pass->npending = 0;
	for (int i = 0; i < n; i++)
	{
		int64		k = int_value(pass->pending[i].key, pass->key_type);

		if (k >= 0 && (uint64) k < pass->int_keys.cap)
			__builtin_prefetch(&pass->int_keys.direct[k]);
	}
	for (int i = 0; i < n; i++)
	{
		PendingOrder *p = &pass->pending[i];

		p->id = lookup_id(pass, p->key, !pass->gap_mode && (p->counts || p->future || pass->map_orders));
		if (p->id == 0)
			continue;
		if (p->has_order_no)
			intmap_set(pass, &pass->orders, p->order_no, p->id);
		__builtin_prefetch(entry_at(pass, p->id - 1));
		__builtin_prefetch((char *) entry_at(pass, p->id - 1) + 64);
	}
	for (int i = 0; i < n; i++)
	{
		PendingOrder *p = &pass->pending[i];
		ProfileEntry *e;

		if (p->id == 0)
			continue;
		e = entry_at(pass, p->id - 1);
		if (!p->counts)
		{
			/* an order still to come enters the windows when it is placed */
			if (p->future && !pass->gap_mode)
				e->window_at = Min(e->window_at, p->at);
			continue;
		}
		if (pass->gap_mode)
		{
			if (e->unsorted)
				keep_time(pass, p->id - 1, p->at);
		}
		else
		{
			OrderRow	row;

			row.key = p->key;
			row.at = p->at;
			row.scaled = p->scaled;
			row.num = NULL;
			add_order(pass, e, &row);
		}
	}
}

/* orders: customer, placed_at, total, and the order number when mapped */
static void
order_row(ProfilePass *pass, TupleTableSlot *slot)
{
	OrderRow	row;
	uint32		id;
	bool		isnull;
	bool		has_order_no = false;
	int64		order_no = 0;
	bool		counts;

	row.key = slot_getattr(slot, 1, &isnull);
	if (isnull)
	{
		pass->skipped_customer++;
		return;
	}
	if (pass->map_orders)
	{
		/* the lines of every order of the customer count, as the join would */
		Datum		d = slot_getattr(slot, 4, &isnull);

		if (!isnull)
		{
			has_order_no = true;
			order_no = int_value(d, TupleDescAttr(slot->tts_tupleDescriptor, 3)->atttypid);
		}
	}
	counts = read_order(pass, slot, &row, true);

	if (pass->key_is_int && pass->exact)
	{
		PendingOrder *p = &pass->pending[pass->npending++];

		p->key = row.key;
		p->at = row.at;
		p->scaled = row.scaled;
		p->counts = counts;
		p->future = row.future;
		p->has_order_no = has_order_no;
		p->order_no = order_no;
		if (pass->npending == BATCH_SIZE)
			flush_orders(pass);
		return;
	}

	/* other keys, and sums in numeric: one at a time */
	if (!counts && !row.future && !pass->map_orders)
		return;
	id = lookup_id(pass, row.key, true);
	if (has_order_no)
		intmap_set(pass, &pass->orders, order_no, id);
	if (counts)
		add_order(pass, entry_at(pass, id - 1), &row);
	else if (row.future)
		entry_at(pass, id - 1)->window_at = Min(entry_at(pass, id - 1)->window_at, row.at);
}

/* the orders again: the times of the customers whose orders came out of order */
static void
gap_row(ProfilePass *pass, TupleTableSlot *slot)
{
	OrderRow	row;
	uint32		id;
	bool		isnull;
	bool		counts;

	row.key = slot_getattr(slot, 1, &isnull);
	if (isnull)
		return;
	counts = read_order(pass, slot, &row, false);
	if (pass->key_is_int && pass->exact)
	{
		PendingOrder *p = &pass->pending[pass->npending++];

		p->key = row.key;
		p->at = row.at;
		p->counts = counts;
		p->future = false;
		p->has_order_no = false;
		if (pass->npending == BATCH_SIZE)
			flush_orders(pass);
		return;
	}
	if (!counts)
		return;
	id = lookup_id(pass, row.key, false);
	if (id != 0 && entry_at(pass, id - 1)->unsorted)
		keep_time(pass, id - 1, row.at);
}

static void
set_category(ProfilePass *pass, ProfileEntry *e, int32 no)
{
	if (no < 0)
		return;
	if (no >= MAX_CATEGORIES)
	{
		pass->categories_overflow = true;
		return;
	}
	if (e != NULL && e->count > 0)
		e->categories |= UINT64CONST(1) << no;
}

/* categories: customer, category number */
static void
category_row(ProfilePass *pass, TupleTableSlot *slot)
{
	bool		isnull;
	Datum		key = slot_getattr(slot, 1, &isnull);
	Datum		no;

	if (isnull)
		return;
	no = slot_getattr(slot, 2, &isnull);
	if (isnull)
		return;
	set_category(pass, lookup_entry(pass, key, false), DatumGetInt32(no));
}

/* Adds the waiting lines' categories to their customers, fetched ahead. */
static void
flush_lines(ProfilePass *pass)
{
	for (int i = 0; i < pass->npending_lines; i++)
		set_category(pass, pass->pending_lines[i].entry, pass->pending_lines[i].category);
	pass->npending_lines = 0;
}

/* product categories: product number, category number */
static void
product_row(ProfilePass *pass, TupleTableSlot *slot)
{
	bool		isnull;
	Datum		product = slot_getattr(slot, 1, &isnull);
	Datum		no;

	if (isnull)
		return;
	no = slot_getattr(slot, 2, &isnull);
	if (isnull || DatumGetInt32(no) < 0)
		return;
	intmap_set(pass, &pass->products,
			   int_value(product, TupleDescAttr(slot->tts_tupleDescriptor, 0)->atttypid),
			   (uint32) DatumGetInt32(no) + 1);
}

/*
 * lines: order number, and the category number or (when the products were
 * mapped) the product number; the orders are mapped to customers
 */
static void
line_row(ProfilePass *pass, TupleTableSlot *slot)
{
	bool		isnull;
	Datum		order_no = slot_getattr(slot, 1, &isnull);
	Datum		no;
	int32		category;
	uint32		id;
	int64		k;

	if (isnull)
		return;
	no = slot_getattr(slot, 2, &isnull);
	if (isnull)
		return;
	if (pass->map_products)
	{
		id = intmap_get(&pass->products, int_value(no, TupleDescAttr(slot->tts_tupleDescriptor, 1)->atttypid));
		if (id == 0)
			return;
		category = (int32) id - 1;
	}
	else
		category = DatumGetInt32(no);
	k = int_value(order_no, TupleDescAttr(slot->tts_tupleDescriptor, 0)->atttypid);
	/* the lines of one order usually come together */
	if (pass->last_order_entry == NULL || k != pass->last_order_no)
	{
		id = intmap_get(&pass->orders, k);
		if (id == 0)
			return;
		pass->last_order_no = k;
		pass->last_order_entry = entry_at(pass, id - 1);
		__builtin_prefetch(pass->last_order_entry);
		__builtin_prefetch((char *) pass->last_order_entry + 64);
	}
	pass->pending_lines[pass->npending_lines].entry = pass->last_order_entry;
	pass->pending_lines[pass->npending_lines].category = category;
	if (++pass->npending_lines == BATCH_SIZE)
		flush_lines(pass);
}

/* category names, in number order */
static void
category_name_row(ProfilePass *pass, TupleTableSlot *slot)
{
	bool		isnull;
	Datum		name = slot_getattr(slot, 1, &isnull);

	if (!isnull && pass->ncategories < MAX_CATEGORIES)
		pass->category_names[pass->ncategories++] = MemoryContextStrdup(pass->cxt, TextDatumGetCString(name));
}

/* comparators for the quintile thresholds */
static ProfilePass *sort_pass;

static int
cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

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
cmp_money_ptr(const void *a, const void *b)
{
	return cmp_money(*(MoneySum *const *) a, *(MoneySum *const *) b);
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

/*
 * Where the value at index idx of n sorted values falls among them: the
 * count of values below it and up to it.
 */
static void
rank_counts(ProfilePass *pass, const void *v, bool money_ptrs, uint32 n, int64 idx, int64 *below, int64 *upto)
{
	int64		lo = idx;
	int64		hi = idx + 1;

	if (money_ptrs)
	{
		MoneySum  *const *p = (MoneySum *const *) v;

		while (lo > 0 && cmp_money(p[lo - 1], p[idx]) == 0)
			lo--;
		while (hi < n && cmp_money(p[hi], p[idx]) == 0)
			hi++;
	}
	else
	{
		const int64 *x = (const int64 *) v;

		while (lo > 0 && x[lo - 1] == x[idx])
			lo--;
		while (hi < n && x[hi] == x[idx])
			hi++;
	}
	*below = lo;
	*upto = hi;
}

/*
 * The quintile thresholds of recency, frequency and money over the
 * customers who ordered, from their values sorted one measure at a time;
 * kept with their ranks for automation._profile_pass_thresholds().
 */
static void
compute_thresholds(ProfilePass *pass, uint32 nentries)
{
	int64	   *v = MemoryContextAllocHuge(pass->cxt, sizeof(int64) * nentries);
	uint32		n;
	int64		idx[4];
	MemoryContext old;

	sort_pass = pass;
	for (int k = 0; k < 4; k++)
		idx[k] = percentile_index(quintiles[k], nentries);

	n = 0;
	for (uint32 id = 0; id < pass->n; id++)
		if (entry_at(pass, id)->count > 0)
			v[n++] = entry_at(pass, id)->last_at;
	qsort(v, n, sizeof(int64), cmp_int64);
	for (int k = 0; k < 4; k++)
	{
		pass->r_thresholds[k] = v[idx[k]];
		rank_counts(pass, v, false, n, idx[k], &last_below[MEASURE_R][k], &last_upto[MEASURE_R][k]);
	}

	n = 0;
	for (uint32 id = 0; id < pass->n; id++)
		if (entry_at(pass, id)->count > 0)
			v[n++] = entry_at(pass, id)->count;
	qsort(v, n, sizeof(int64), cmp_int64);
	for (int k = 0; k < 4; k++)
	{
		pass->f_thresholds[k] = (int32) v[idx[k]];
		rank_counts(pass, v, false, n, idx[k], &last_below[MEASURE_F][k], &last_upto[MEASURE_F][k]);
	}

	if (pass->exact)
	{
		n = 0;
		for (uint32 id = 0; id < pass->n; id++)
			if (entry_at(pass, id)->count > 0)
				v[n++] = entry_at(pass, id)->sums[SUM_TOTAL].scaled;
		qsort(v, n, sizeof(int64), cmp_int64);
		for (int k = 0; k < 4; k++)
		{
			pass->m_thresholds[k].scaled = v[idx[k]];
			rank_counts(pass, v, false, n, idx[k], &last_below[MEASURE_M][k], &last_upto[MEASURE_M][k]);
		}
	}
	else
	{
		MoneySum  **p = (MoneySum **) v;

		n = 0;
		for (uint32 id = 0; id < pass->n; id++)
			if (entry_at(pass, id)->count > 0)
				p[n++] = &entry_at(pass, id)->sums[SUM_TOTAL];
		qsort(p, n, sizeof(MoneySum *), cmp_money_ptr);
		for (int k = 0; k < 4; k++)
		{
			pass->m_thresholds[k] = *p[idx[k]];
			rank_counts(pass, p, true, n, idx[k], &last_below[MEASURE_M][k], &last_upto[MEASURE_M][k]);
		}
	}
	pfree(v);

	/* keep them for the session, in the form the profiles store them */
	old = MemoryContextSwitchTo(TopMemoryContext);
	for (int k = 0; k < 4; k++)
	{
		if (last_m[k] != NULL)
			pfree(last_m[k]);
		last_r[k] = pass->r_thresholds[k];
		last_f[k] = pass->f_thresholds[k];
		last_m[k] = DatumGetNumericCopy(NumericGetDatum(sum_to_numeric(pass, &pass->m_thresholds[k])));
	}
	MemoryContextSwitchTo(old);
	last_profiles = nentries;
	last_thresholds_valid = true;
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
	values[11] = CStringGetTextDatum(pg_get_timezone_name(entry_zone(pass, e)->tz));

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

	/*
	 * Points as a bigint, held within its range (an amount entered wrong --
	 * a total of 1e19 -- must not stop every refresh).
	 */
	{
		Datum		points = DirectFunctionCall1(numeric_floor,
												 DirectFunctionCall2(numeric_mul,
																	 NumericGetDatum(sums[SUM_TOTAL]),
																	 NumericGetDatum(pass->points_per_unit)));

		if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, points, NumericGetDatum(pass->points_max))) > 0)
			values[18] = Int64GetDatum(PG_INT64_MAX);
		else if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, points, NumericGetDatum(pass->points_min))) < 0)
			values[18] = Int64GetDatum(PG_INT64_MIN);
		else
			values[18] = DirectFunctionCall1(numeric_int8, points);
	}

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

	/*
	 * When the profile next changes with no new order: an order leaves a
	 * window or comes due, or the lifecycle stage moves on with the days
	 * (to lapsing, then to lost).
	 */
	{
		TimestampTz next = e->window_at;

		if (strcmp(stage, "lost") != 0)
		{
			next = Min(next, e->last_at + (int64) automation_lost_days * USECS_PER_DAY);
			if (strcmp(stage, "lapsing") != 0)
				next = Min(next, e->last_at + ((int64) floor(fmax(automation_lapsing_factor * mean_gap,
																  (double) automation_lapsing_min_days)) + 1) * USECS_PER_DAY);
		}
		values[21] = TimestampTzGetDatum(next);
		nulls[21] = next == DT_NOEND;
	}

	return heap_form_tuple(pass->tupdesc, values, nulls);
}

/*
 * Runs the pass: zones, orders, the gap fix-up, categories; then, for a
 * full pass, the RFM thresholds.
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
	char	   *lines_query = PG_NARGS() > 9 && !PG_ARGISNULL(9) ? text_to_cstring(PG_GETARG_TEXT_PP(9)) : NULL;
	char	   *products_query = PG_NARGS() > 10 && !PG_ARGISNULL(10) ? text_to_cstring(PG_GETARG_TEXT_PP(10)) : NULL;
	Datum	   *w;
	bool	   *wnulls;
	int			nw;
	Oid			save_userid;
	int			save_sec;
	SPIPlanPtr	plan;
	TupleDesc	desc;
	int64		unsorted = 0;
	uint32		nentries = 0;

	sort_pass = pass;
	deconstruct_array(windows, TIMESTAMPTZOID, sizeof(TimestampTz), true, TYPALIGN_DOUBLE, &w, &wnulls, &nw);
	if (nw != 4 || wnulls[0] || wnulls[1] || wnulls[2] || wnulls[3])
		elog(ERROR, "automation._profile_pass needs four windows");
	pass->since_90d = DatumGetTimestampTz(w[0]);
	pass->since_365d = DatumGetTimestampTz(w[1]);
	pass->quarter_start = DatumGetTimestampTz(w[2]);
	pass->quarter_end = DatumGetTimestampTz(w[3]);
	pass->default_zone.tz = pg_tzset(automation_default_timezone);
	if (pass->default_zone.tz == NULL)
		pass->default_zone.tz = pg_tzset("UTC");
	pass->vip_threshold = setting_numeric(automation_vip_threshold);
	pass->gold_threshold = setting_numeric(automation_vip_gold_threshold);
	pass->points_per_unit = setting_numeric(automation_points_per_unit);
	pass->points_max = int64_to_numeric(PG_INT64_MAX);
	pass->points_min = int64_to_numeric(PG_INT64_MIN);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* learn the key, amount and order number types from the orders query itself */
	plan = SPI_prepare(orders_query, 1, &keys_type);
	if (plan == NULL)
		elog(ERROR, "cannot prepare the orders query: %s", SPI_result_code_string(SPI_result));
	{
		List	   *sources = SPI_plan_get_plan_sources(plan);
		CachedPlanSource *src = (CachedPlanSource *) linitial(sources);

		desc = CreateTupleDescCopy(src->resultDesc);
	}
	SPI_freeplan(plan);
	pass->key_type = TupleDescAttr(desc, 0)->atttypid;
	pass->total_type = getBaseType(TupleDescAttr(desc, 2)->atttypid);
	if (pass->total_type == NUMERICOID && TupleDescAttr(desc, 2)->atttypmod >= (int32) VARHDRSZ)
		pass->scale = Max(0, (int) (((TupleDescAttr(desc, 2)->atttypmod - VARHDRSZ) & 0x7ff) ^ 1024) - 1024);
	else if (is_int_type(pass->total_type))
		pass->scale = 0;
	else
		pass->scale = 6;		/* unconstrained numeric, floats: switch if needed */
	pass->exact = true;
	pass->max_dscale = 0;

	get_typlenbyvalalign(pass->key_type, &pass->key_len, &pass->key_byval, &pass->key_align);
	pass->key_is_int = is_int_type(pass->key_type);
	if (!pass->key_is_int)
	{
		TypeCacheEntry *tce;
		HASHCTL		ctl;

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
		ctl.entrysize = sizeof(KeyMapEntry);
		ctl.hash = key_hash;
		ctl.match = key_match;
		ctl.hcxt = pass->cxt;
		current_pass = pass;
		pass->keys = hash_create("automation profiles", 1024, &ctl,
								 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	}

	/*
	 * A full pass reads the lines on their own when the orders query gives
	 * integer order numbers; otherwise categories come from the join.
	 */
	pass->categories_bound = category_names_query != NULL && (categories_query != NULL || lines_query != NULL);
	pass->map_orders = pass->categories_bound && lines_query != NULL && PG_ARGISNULL(4)
		&& desc->natts >= 4 && is_int_type(TupleDescAttr(desc, 3)->atttypid);
	if (pass->map_orders)
	{
		/* the lines' order numbers must be integers too */
		SPIPlanPtr	lines_plan = SPI_prepare(lines_query, 0, NULL);
		List	   *sources;
		TupleDesc	lines_desc;

		if (lines_plan == NULL)
			elog(ERROR, "cannot prepare the lines query: %s", SPI_result_code_string(SPI_result));
		sources = SPI_plan_get_plan_sources(lines_plan);
		lines_desc = ((CachedPlanSource *) linitial(sources))->resultDesc;
		pass->map_orders = is_int_type(TupleDescAttr(lines_desc, 0)->atttypid);
		/* with a products query, the lines give integer product numbers */
		pass->map_products = products_query != NULL;
		if (pass->map_products && (lines_desc->natts < 2 || !is_int_type(TupleDescAttr(lines_desc, 1)->atttypid)))
			elog(ERROR, "automation._profile_pass needs integer products in the lines query");
		SPI_freeplan(lines_plan);
	}
	if (pass->categories_bound && !pass->map_orders && categories_query == NULL)
		elog(ERROR, "automation._profile_pass needs a categories query");

	/* read the shop with the privileges of the role that bound it */
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(get_role_oid(bound_by, false), save_sec | SECURITY_LOCAL_USERID_CHANGE);

	if (zones_query)
		for_each_row(pass, zones_query, keys, PG_ARGISNULL(4), keys_type, zone_row);
	for_each_row(pass, orders_query, keys, PG_ARGISNULL(4), keys_type, order_row);
	flush_orders(pass);
	if (pass->zone_by_key != NULL)
		pfree(pass->zone_by_key);
	pass->zone_by_key = NULL;
	pass->zone_by_key_cap = 0;

	if (pass->categories_bound)
	{
		for_each_row(pass, category_names_query, (Datum) 0, true, keys_type, category_name_row);
		if (pass->map_orders)
		{
			if (pass->map_products)
				for_each_row(pass, products_query, (Datum) 0, true, keys_type, product_row);
			for_each_row(pass, lines_query, (Datum) 0, true, keys_type, line_row);
			flush_lines(pass);
			if (pass->products.direct != NULL)
				pfree(pass->products.direct);
			if (pass->products.hash != NULL)
				hash_destroy(pass->products.hash);
			memset(&pass->products, 0, sizeof(pass->products));
		}
		else
			for_each_row(pass, categories_query, keys, PG_ARGISNULL(4), keys_type, category_row);
		if (pass->categories_overflow)
			ereport(WARNING,
					(errmsg("customer profiles record only the first %d product categories", MAX_CATEGORIES),
					 errdetail("The shop's products have more categories than that; the others are left out of customer_profile.categories.")));
	}
	/* the order map is no longer needed */
	if (pass->orders.direct != NULL)
		pfree(pass->orders.direct);
	if (pass->orders.hash != NULL)
		hash_destroy(pass->orders.hash);
	memset(&pass->orders, 0, sizeof(pass->orders));

	/*
	 * Customers whose orders came out of time order: read the orders again,
	 * keep these customers' times (the pass knows how many each has), and
	 * sort each one's to compute the gaps.
	 */
	for (uint32 id = 0; id < pass->n; id++)
		if (entry_at(pass, id)->unsorted)
			unsorted += entry_at(pass, id)->count;
	if (unsorted > 0)
	{
		uint64		pos = 0;

		pass->times_next = MemoryContextAllocHuge(pass->cxt, sizeof(uint32) * pass->n);
		pass->times = MemoryContextAllocHuge(pass->cxt, sizeof(TimestampTz) * unsorted);
		pass->times_len = unsorted;
		for (uint32 id = 0; id < pass->n; id++)
		{
			pass->times_next[id] = (uint32) pos;
			if (entry_at(pass, id)->unsorted)
				pos += entry_at(pass, id)->count;
		}
		if (pos > PG_UINT32_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("too many orders out of time order for the profile pass")));
		pass->gap_mode = true;
		for_each_row(pass, orders_query, keys, PG_ARGISNULL(4), keys_type, gap_row);
		flush_orders(pass);
		pass->gap_mode = false;
		pos = 0;
		for (uint32 id = 0; id < pass->n; id++)
		{
			ProfileEntry *e = entry_at(pass, id);
			TimestampTz *t;

			if (!e->unsorted)
				continue;
			/* times_next has moved past this customer's times */
			t = pass->times + pos;
			pos += e->count;
			if (pass->times_next[id] != pos)
				orders_changed();
			qsort(t, e->count, sizeof(TimestampTz), cmp_int64);
			e->gap_sq = 0;
			for (int32 i = 1; i < e->count; i++)
			{
				double		gap = (double) (t[i] - t[i - 1]) / USECS_PER_DAY;

				e->gap_sq += gap * gap;
			}
			if ((id & 0xffff) == 0)
				CHECK_FOR_INTERRUPTS();
		}
		pfree(pass->times);
		pfree(pass->times_next);
		pass->times = NULL;
		pass->times_next = NULL;
	}

	SetUserIdAndSecContext(save_userid, save_sec);

	/*
	 * Customers whose only orders are still to come get no profile; a later
	 * refresh must look at them again when their first order is placed.
	 */
	{
		Datum	   *pkeys = NULL;
		int			npending = 0;

		for (uint32 id = 0; id < pass->n; id++)
		{
			ProfileEntry *e = entry_at(pass, id);

			if (e->count == 0 && e->window_at != DT_NOEND)
			{
				if (pkeys == NULL)
					pkeys = palloc(sizeof(Datum) * pass->n);
				pkeys[npending++] = e->key;
			}
		}
		if (npending > 0)
		{
			Oid			argtype = get_array_type(pass->key_type);
			Datum		arg = PointerGetDatum(construct_array(pkeys, npending, pass->key_type, pass->key_len,
															  pass->key_byval, pass->key_align));
			int			rc;

			rc = SPI_execute_with_args("INSERT INTO automation.dirty_customer (customer_key) "
									   "SELECT k FROM pg_catalog.unnest($1) k ON CONFLICT DO NOTHING",
									   1, &argtype, &arg, NULL, false, 0);
			if (rc != SPI_OK_INSERT)
				elog(ERROR, "cannot record the customers whose orders are still to come: %s",
					 SPI_result_code_string(rc));
		}
	}
	SPI_finish();

	last_orders_read = pass->orders_read;
	last_skipped_customer = pass->skipped_customer;
	last_skipped_time = pass->skipped_time;
	last_skipped_total = pass->skipped_total;
	if (last_skipped_customer + last_skipped_time + last_skipped_total > 0)
		ereport(NOTICE,
				(errmsg("skipped %lld orders: %lld without a customer, %lld without a time, %lld with a missing or negative total",
						(long long) (last_skipped_customer + last_skipped_time + last_skipped_total),
						(long long) last_skipped_customer, (long long) last_skipped_time,
						(long long) last_skipped_total)));

	/*
	 * Integer keys go out in key order, which the profiles' primary key
	 * takes in faster than any other; the array of numbers by key is not
	 * needed after that.
	 */
	if (pass->key_is_int && pass->n > 0)
	{
		uint32		n = 0;

		pass->output = MemoryContextAllocHuge(pass->cxt, sizeof(uint32) * pass->n);
		if (pass->int_keys.hash != NULL)
		{
			HASH_SEQ_STATUS seq;
			IntMapEntry *m;

			hash_seq_init(&seq, pass->int_keys.hash);
			while ((m = hash_seq_search(&seq)) != NULL)
				if (m->key < 0)
					pass->output[n++] = m->value - 1;
		}
		for (uint64 k = 0; k < pass->int_keys.cap; k++)
			if (pass->int_keys.direct[k] != 0)
				pass->output[n++] = pass->int_keys.direct[k] - 1;
		if (pass->int_keys.hash != NULL)
		{
			HASH_SEQ_STATUS seq;
			IntMapEntry *m;

			hash_seq_init(&seq, pass->int_keys.hash);
			while ((m = hash_seq_search(&seq)) != NULL)
				if (m->key >= 0)
					pass->output[n++] = m->value - 1;
		}
		Assert(n == pass->n);
		if (pass->int_keys.direct != NULL)
			pfree(pass->int_keys.direct);
		memset(&pass->int_keys, 0, sizeof(pass->int_keys));
	}

	for (uint32 id = 0; id < pass->n; id++)
		if (entry_at(pass, id)->count > 0)
			nentries++;
	if (pass->full)
	{
		last_thresholds_valid = false;
		last_profiles = 0;
		if (nentries > 0)
			compute_thresholds(pass, nentries);
	}
}

/*
 * automation._profile_pass(orders_query, zones_query, categories_query,
 *                          category_names_query, keys, now, full_refresh,
 *                          windows, bound_by, lines_query, products_query)
 *
 * Returns one automation.customer_profile row per customer with a counted
 * order.  With products_query (product number, category number; integer
 * products), the lines query gives each line's product number rather than
 * its category, and the pass maps products to categories itself instead of
 * joining every line of the shop to the products.  windows: the start of the 90-day and 365-day windows and the
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

		last_orders_read = last_skipped_customer = last_skipped_time = last_skipped_total = 0;
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
	sort_pass = pass;
	while (pass->next < pass->n)
	{
		uint32		id = pass->output ? pass->output[pass->next] : pass->next;
		ProfileEntry *e = entry_at(pass, id);
		MemoryContext old;
		HeapTuple	tuple;

		pass->next++;

		if (e->count == 0)
			continue;
		MemoryContextReset(pass->row_cxt);
		old = MemoryContextSwitchTo(pass->row_cxt);
		tuple = build_row(pass, e);
		MemoryContextSwitchTo(old);
		SRF_RETURN_NEXT(funcctx, HeapTupleGetDatum(tuple));
	}
	MemoryContextDelete(pass->cxt);
	MemoryContextDelete(pass->row_cxt);
	current_pass = NULL;
	sort_pass = NULL;
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

static Datum
int64_array(const int64 *v)
{
	Datum		d[4];

	for (int k = 0; k < 4; k++)
		d[k] = Int64GetDatum(v[k]);
	return PointerGetDatum(construct_array(d, 4, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * automation._profile_pass_thresholds(): the RFM thresholds of the last
 * full pass of this session, each with the count of profiles whose value is
 * below it and up to it; NULLs when there was none or it found no profile.
 */
Datum
automation_profile_pass_thresholds(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[10];
	bool		nulls[10];
	Datum		d[4];

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE || tupdesc->natts != 10)
		elog(ERROR, "return type must be a row type of 10 columns");
	memset(nulls, !last_thresholds_valid, sizeof(nulls));
	if (last_thresholds_valid)
	{
		values[0] = Int64GetDatum(last_profiles);
		for (int k = 0; k < 4; k++)
			d[k] = TimestampTzGetDatum(last_r[k]);
		values[1] = PointerGetDatum(construct_array(d, 4, TIMESTAMPTZOID, sizeof(TimestampTz), true, TYPALIGN_DOUBLE));
		values[2] = int64_array(last_below[MEASURE_R]);
		values[3] = int64_array(last_upto[MEASURE_R]);
		for (int k = 0; k < 4; k++)
			d[k] = Int32GetDatum(last_f[k]);
		values[4] = PointerGetDatum(construct_array(d, 4, INT4OID, sizeof(int32), true, TYPALIGN_INT));
		values[5] = int64_array(last_below[MEASURE_F]);
		values[6] = int64_array(last_upto[MEASURE_F]);
		for (int k = 0; k < 4; k++)
			d[k] = NumericGetDatum(last_m[k]);
		values[7] = PointerGetDatum(construct_array(d, 4, NUMERICOID, -1, false, TYPALIGN_INT));
		values[8] = int64_array(last_below[MEASURE_M]);
		values[9] = int64_array(last_upto[MEASURE_M]);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}
