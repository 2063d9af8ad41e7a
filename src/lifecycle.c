/*-------------------------------------------------------------------------
 *
 * lifecycle.c
 *	  The lifecycle pass: one read of the shop's purchases that finds, for
 *	  every customer and product, how often and how regularly it was bought,
 *	  and for every product how long a unit lasts.
 *
 * automation._lifecycle_pass(query, bound_by) runs the query that
 * automation.refresh_lifecycle() builds from the bindings -- one row per
 * purchase: customer key and product as text, time, quantity -- through an
 * SPI cursor with the privileges of the role that bound the orders.  Rows
 * come in any order.  Customers and products are interned to numbers, each
 * purchase is appended to one array, and the purchases are then grouped by
 * customer and product with a counting sort (one pass to count, one to
 * place), each group put in time order on its own (groups are small).  A
 * sweep over the groups folds purchases at the same moment into one, and
 * computes the count, the first and last purchase, the last quantity, and
 * the mean and standard deviation of the days between purchases; every
 * repeat purchase also gives one observation of days per unit -- the days
 * since the previous purchase divided by the units bought then -- collected
 * per product.  Each product's observations are sorted for their median
 * and quartiles, computed as percentile_cont does.
 *
 * The result has one row per customer and product (customer_key set) and
 * one per product with observations (customer_key NULL), materialised.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(automation_lifecycle_pass);

#define LIFECYCLE_BATCH 10000
#define USECS_PER_DAY_F ((double) USECS_PER_DAY)

/* a string interned to a number */
typedef struct InternKey
{
	const char *str;
	Size		len;
} InternKey;

typedef struct InternEntry
{
	InternKey	key;
	uint32		id;
} InternEntry;

typedef struct PairEntry
{
	uint64		key;			/* customer id << 32 | product id */
	uint32		id;
} PairEntry;

/* a growable array of doubles: one product's observations */
typedef struct Observations
{
	double	   *v;
	uint32		n;
	uint32		cap;
} Observations;

typedef struct LifecyclePass
{
	MemoryContext cxt;
	MemoryContext batch_cxt;	/* reset after every batch of rows */
	HTAB	   *customers;
	HTAB	   *products;
	HTAB	   *pairs;
	/* by id */
	char	  **customer_name;
	uint32		ncustomers,
				customer_cap;
	char	  **product_name;
	uint32		nproducts,
				product_cap;
	uint32	   *pair_customer;
	uint32	   *pair_product;
	uint32		npairs,
				pair_cap;
	/* purchases, in the order read */
	uint32	   *ev_pair;
	TimestampTz *ev_at;
	double	   *ev_qty;
	uint64		nev,
				ev_cap;
} LifecyclePass;

static uint32
intern_hash(const void *key, Size keysize)
{
	const InternKey *k = (const InternKey *) key;

	return hash_bytes((const unsigned char *) k->str, (int) k->len);
}

static int
intern_match(const void *key1, const void *key2, Size keysize)
{
	const InternKey *a = (const InternKey *) key1;
	const InternKey *b = (const InternKey *) key2;

	if (a->len != b->len)
		return 1;
	return memcmp(a->str, b->str, a->len);
}

static HTAB *
intern_table(const char *name, MemoryContext cxt)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(InternKey);
	ctl.entrysize = sizeof(InternEntry);
	ctl.hash = intern_hash;
	ctl.match = intern_match;
	ctl.hcxt = cxt;
	return hash_create(name, 1024, &ctl, HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
}

/* grows an array of elements of size elsize to hold at least n */
static void *
grow(void *array, uint64 *cap, uint64 n, Size elsize, MemoryContext cxt)
{
	uint64		newcap;

	if (n <= *cap)
		return array;
	newcap = Max(*cap * 2, Max(n, 1024));
	if (array == NULL)
		array = MemoryContextAllocHuge(cxt, newcap * elsize);
	else
		array = repalloc_huge(array, newcap * elsize);
	*cap = newcap;
	return array;
}

static uint32
intern(LifecyclePass *pass, HTAB *table, const char *str, char ***names, uint32 *n, uint32 *cap)
{
	InternKey	key = {str, strlen(str)};
	InternEntry *e;
	bool		found;

	e = hash_search(table, &key, HASH_ENTER, &found);
	if (!found)
	{
		uint64		c = *cap;

		e->key.str = MemoryContextStrdup(pass->cxt, str);
		e->id = *n;
		*names = grow(*names, &c, (uint64) *n + 1, sizeof(char *), pass->cxt);
		*cap = (uint32) Min(c, PG_UINT32_MAX);
		(*names)[*n] = (char *) e->key.str;
		(*n)++;
		if (*n == PG_UINT32_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("too many distinct customers or products for the lifecycle pass")));
	}
	return e->id;
}

static void
add_purchase(LifecyclePass *pass, HeapTuple tuple, TupleDesc desc)
{
	bool		isnull;
	Datum		d;
	char	   *customer;
	char	   *product;
	TimestampTz at;
	double		qty;
	uint32		c,
				p;
	uint64		key;
	PairEntry  *pe;
	bool		found;

	d = SPI_getbinval(tuple, desc, 1, &isnull);
	if (isnull)
		return;
	customer = TextDatumGetCString(d);
	d = SPI_getbinval(tuple, desc, 2, &isnull);
	if (isnull)
		return;
	product = TextDatumGetCString(d);
	d = SPI_getbinval(tuple, desc, 3, &isnull);
	if (isnull)
		return;
	at = DatumGetTimestampTz(d);
	if (TIMESTAMP_NOT_FINITE(at))
		return;
	d = SPI_getbinval(tuple, desc, 4, &isnull);
	qty = isnull ? 0 : DatumGetFloat8(d);
	if (!isfinite(qty) || qty < 0)
		qty = 0;

	c = intern(pass, pass->customers, customer, &pass->customer_name, &pass->ncustomers, &pass->customer_cap);
	p = intern(pass, pass->products, product, &pass->product_name, &pass->nproducts, &pass->product_cap);
	key = ((uint64) c << 32) | p;
	pe = hash_search(pass->pairs, &key, HASH_ENTER, &found);
	if (!found)
	{
		uint64		cap = pass->pair_cap;
		uint64		cap2 = pass->pair_cap;

		pe->id = pass->npairs;
		pass->pair_customer = grow(pass->pair_customer, &cap, (uint64) pass->npairs + 1, sizeof(uint32), pass->cxt);
		pass->pair_product = grow(pass->pair_product, &cap2, (uint64) pass->npairs + 1, sizeof(uint32), pass->cxt);
		pass->pair_cap = (uint32) Min(cap, PG_UINT32_MAX);
		pass->pair_customer[pass->npairs] = c;
		pass->pair_product[pass->npairs] = p;
		pass->npairs++;
		if (pass->npairs == PG_UINT32_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("too many customer and product pairs for the lifecycle pass")));
	}

	if (pass->nev + 1 > pass->ev_cap)
	{
		uint64		cap = pass->ev_cap;
		uint64		cap2 = pass->ev_cap;
		uint64		cap3 = pass->ev_cap;

		pass->ev_pair = grow(pass->ev_pair, &cap, pass->nev + 1, sizeof(uint32), pass->cxt);
		pass->ev_at = grow(pass->ev_at, &cap2, pass->nev + 1, sizeof(TimestampTz), pass->cxt);
		pass->ev_qty = grow(pass->ev_qty, &cap3, pass->nev + 1, sizeof(double), pass->cxt);
		pass->ev_cap = cap;
	}
	pass->ev_pair[pass->nev] = pe->id;
	pass->ev_at[pass->nev] = at;
	pass->ev_qty[pass->nev] = qty;
	pass->nev++;
}

static void
observe(Observations *o, double v, MemoryContext cxt)
{
	if (o->n == o->cap)
	{
		uint32		cap = o->cap == 0 ? 16 : o->cap * 2;

		o->v = o->v == NULL ? MemoryContextAllocHuge(cxt, sizeof(double) * cap)
			: repalloc_huge(o->v, sizeof(double) * cap);
		o->cap = cap;
	}
	o->v[o->n++] = v;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

/* percentile_cont(f) of sorted values, as PostgreSQL computes it */
static double
percentile(const double *v, uint32 n, double f)
{
	double		pos = f * (n - 1);
	uint32		lo = (uint32) floor(pos);
	uint32		hi = (uint32) ceil(pos);

	if (lo == hi)
		return v[lo];
	return v[lo] + (pos - lo) * (v[hi] - v[lo]);
}

Datum
automation_lifecycle_pass(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *query;
	char	   *bound_by;
	LifecyclePass pass;
	HASHCTL		ctl;
	Portal		portal;
	Oid			save_userid;
	int			save_sec;
	uint32	   *start;
	uint32	   *order;
	Observations *obs;
	MemoryContext old;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		elog(ERROR, "automation._lifecycle_pass needs a query and a role");
	query = text_to_cstring(PG_GETARG_TEXT_PP(0));
	bound_by = NameStr(*PG_GETARG_NAME(1));

	InitMaterializedSRF(fcinfo, 0);

	memset(&pass, 0, sizeof(pass));
	pass.cxt = AllocSetContextCreate(CurrentMemoryContext, "automation lifecycle pass", ALLOCSET_DEFAULT_SIZES);
	pass.batch_cxt = AllocSetContextCreate(pass.cxt, "automation lifecycle batch", ALLOCSET_DEFAULT_SIZES);
	pass.customers = intern_table("automation lifecycle customers", pass.cxt);
	pass.products = intern_table("automation lifecycle products", pass.cxt);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(PairEntry);
	ctl.hcxt = pass.cxt;
	pass.pairs = hash_create("automation lifecycle pairs", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* read the shop with the privileges of the role that bound it */
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(get_role_oid(bound_by, false), save_sec | SECURITY_LOCAL_USERID_CHANGE);

	portal = SPI_cursor_open_with_args(NULL, query, 0, NULL, NULL, NULL, true, 0);
	if (portal->tupDesc->natts != 4
		|| TupleDescAttr(portal->tupDesc, 0)->atttypid != TEXTOID
		|| TupleDescAttr(portal->tupDesc, 1)->atttypid != TEXTOID
		|| TupleDescAttr(portal->tupDesc, 2)->atttypid != TIMESTAMPTZOID
		|| TupleDescAttr(portal->tupDesc, 3)->atttypid != FLOAT8OID)
		elog(ERROR, "the lifecycle query must return customer text, product text, at timestamptz, quantity float8");
	for (;;)
	{
		SPI_cursor_fetch(portal, true, LIFECYCLE_BATCH);
		if (SPI_processed == 0)
			break;
		old = MemoryContextSwitchTo(pass.batch_cxt);
		for (uint64 i = 0; i < SPI_processed; i++)
			add_purchase(&pass, SPI_tuptable->vals[i], SPI_tuptable->tupdesc);
		MemoryContextSwitchTo(old);
		MemoryContextReset(pass.batch_cxt);
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_freetuptable(SPI_tuptable);
	SPI_cursor_close(portal);
	SetUserIdAndSecContext(save_userid, save_sec);
	SPI_finish();

	old = MemoryContextSwitchTo(pass.cxt);

	/* group the purchases by customer and product: count, then place */
	start = MemoryContextAllocHuge(pass.cxt, sizeof(uint32) * ((Size) pass.npairs + 1));
	memset(start, 0, sizeof(uint32) * ((Size) pass.npairs + 1));
	if (pass.nev >= PG_UINT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many purchases for the lifecycle pass")));
	for (uint64 i = 0; i < pass.nev; i++)
		start[pass.ev_pair[i] + 1]++;
	for (uint32 k = 0; k < pass.npairs; k++)
		start[k + 1] += start[k];
	order = MemoryContextAllocHuge(pass.cxt, sizeof(uint32) * Max(pass.nev, 1));
	{
		uint32	   *next = MemoryContextAllocHuge(pass.cxt, sizeof(uint32) * Max(pass.npairs, 1));

		memcpy(next, start, sizeof(uint32) * pass.npairs);
		for (uint64 i = 0; i < pass.nev; i++)
			order[next[pass.ev_pair[i]]++] = (uint32) i;
		pfree(next);
	}
	if (pass.ev_pair != NULL)
		pfree(pass.ev_pair);

	obs = palloc0(sizeof(Observations) * Max(pass.nproducts, 1));

	for (uint32 k = 0; k < pass.npairs; k++)
	{
		uint32		lo = start[k];
		uint32		hi = start[k + 1];
		int32		purchases = 0;
		TimestampTz first = 0,
					last = 0;
		double		last_qty = 0;
		double		gap_mean = 0,
					gap_m2 = 0;
		int64		ngaps = 0;
		Datum		values[11];
		bool		nulls[11];

		/* this pair's purchases in time order (insertion sort: groups are small) */
		for (uint32 i = lo + 1; i < hi; i++)
		{
			uint32		x = order[i];
			uint32		j = i;

			while (j > lo && pass.ev_at[order[j - 1]] > pass.ev_at[x])
			{
				order[j] = order[j - 1];
				j--;
			}
			order[j] = x;
		}

		for (uint32 i = lo; i < hi; i++)
		{
			TimestampTz at = pass.ev_at[order[i]];
			double		qty = pass.ev_qty[order[i]];

			if (purchases > 0 && at == last)
			{
				last_qty += qty;	/* two lines of one order */
				continue;
			}
			if (purchases > 0)
			{
				double		gap = (double) (at - last) / USECS_PER_DAY_F;
				double		delta = gap - gap_mean;

				ngaps++;
				gap_mean += delta / ngaps;
				gap_m2 += delta * (gap - gap_mean);
				if (last_qty > 0)
					observe(&obs[pass.pair_product[k]], gap / last_qty, pass.cxt);
			}
			else
				first = at;
			purchases++;
			last = at;
			last_qty = qty;
		}
		if ((k & 0xffff) == 0)
			CHECK_FOR_INTERRUPTS();

		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(pass.customer_name[pass.pair_customer[k]]);
		values[1] = CStringGetTextDatum(pass.product_name[pass.pair_product[k]]);
		values[2] = Int32GetDatum(purchases);
		values[3] = TimestampTzGetDatum(first);
		values[4] = TimestampTzGetDatum(last);
		values[5] = Float8GetDatum(last_qty);
		values[6] = Float8GetDatum(gap_mean);
		nulls[6] = ngaps == 0;
		values[7] = Float8GetDatum(ngaps > 1 ? sqrt(gap_m2 / (ngaps - 1)) : 0);
		nulls[7] = ngaps < 2;
		nulls[8] = nulls[9] = nulls[10] = true;
		MemoryContextSwitchTo(old);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		pfree(DatumGetPointer(values[0]));
		pfree(DatumGetPointer(values[1]));
		MemoryContextSwitchTo(pass.cxt);
	}

	/* per product: the median days per unit and the spread */
	for (uint32 p = 0; p < pass.nproducts; p++)
	{
		Observations *o = &obs[p];
		Datum		values[11];
		bool		nulls[11];
		double		median;

		if (o->n == 0)
			continue;
		qsort(o->v, o->n, sizeof(double), cmp_double);
		median = percentile(o->v, o->n, 0.5);
		memset(nulls, true, sizeof(nulls));
		values[1] = CStringGetTextDatum(pass.product_name[p]);
		nulls[1] = false;
		values[8] = Float8GetDatum(median);
		nulls[8] = false;
		values[9] = Int64GetDatum((int64) o->n);
		nulls[9] = false;
		values[10] = Float8GetDatum((percentile(o->v, o->n, 0.75) - percentile(o->v, o->n, 0.25)) / median);
		nulls[10] = median == 0;
		MemoryContextSwitchTo(old);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		MemoryContextSwitchTo(pass.cxt);
	}

	MemoryContextSwitchTo(old);
	MemoryContextDelete(pass.cxt);
	return (Datum) 0;
}
