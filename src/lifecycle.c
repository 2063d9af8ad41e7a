/*-------------------------------------------------------------------------
 *
 * lifecycle.c
 *	  The lifecycle pass: one read of the shop's purchases that finds, for
 *	  every customer and product, how often and how regularly it was bought,
 *	  and for every product how long a unit lasts.
 *
 * automation._lifecycle_pass(query, bound_by) runs the query that
 * automation.refresh_lifecycle() builds from the bindings -- one row per
 * purchase: customer key and product (integers, or text), time, quantity --
 * with the privileges of the role that bound the orders, the rows streamed
 * to a receiver rather than copied out in batches.  Rows come in any
 * order.  Customers and products are interned to numbers (the lines of one
 * order come together, so the last customer is remembered), each purchase
 * is appended to one array, and the purchases are then grouped by customer
 * with a counting sort (one pass to count, one to place) and each
 * customer's put in product and time order on its own (they are few).  A
 * sweep over each customer's products folds purchases at the same moment into one, and
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
#include "executor/tuptable.h"
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
/* integer keys below this are looked up in an array, not a hash table */
#define DIRECT_KEYS (16 * 1024 * 1024)
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

/* an integer key interned to a number */
typedef struct IntEntry
{
	int64		key;
	uint32		id;
} IntEntry;

/* a growable array of doubles: one product's observations */
typedef struct Observations
{
	double	   *v;
	uint32		n;
	uint32		cap;
} Observations;

/* the customers, or the products: their keys interned to numbers */
typedef struct KeyColumn
{
	Oid			type;			/* the query column's type */
	bool		is_int;			/* read as an integer, not text */
	HTAB	   *table;
	/* id + 1 by integer key, for small non-negative keys (0: not seen) */
	uint32	   *direct;
	uint64		direct_cap;
	/* the key as text, by id */
	char	  **names;
	uint32		n,
				cap;
} KeyColumn;

typedef struct LifecyclePass
{
	MemoryContext cxt;
	MemoryContext batch_cxt;	/* reset every so many rows */
	uint64		rows_in_batch;
	KeyColumn	customer;
	KeyColumn	product;
	/* the customer of the previous row */
	bool		have_last;
	int64		last_int;
	char	   *last_str;
	Size		last_len,
				last_cap;
	uint32		last_id;
	/* purchases, in the order read */
	uint32	   *ev_customer;
	uint32	   *ev_product;
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

static HTAB *
int_table(const char *name, MemoryContext cxt)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(IntEntry);
	ctl.hcxt = cxt;
	return hash_create(name, 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
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

/*
 * The number of a customer or product: an integer key as itself, a text key
 * by its bytes.  names[id] keeps the key as text for the result.
 */
static int64
int_key(Datum value, Oid type)
{
	return type == INT8OID ? DatumGetInt64(value) : type == INT4OID ? DatumGetInt32(value) : DatumGetInt16(value);
}

static uint32
intern(LifecyclePass *pass, KeyColumn *col, Datum value)
{
	uint32	   *id;
	uint32		direct_id;
	bool		found;
	const char *str = NULL;
	int64		ikey = 0;
	bool		direct = false;

	if (col->is_int)
	{
		ikey = int_key(value, col->type);
		direct = ikey >= 0 && ikey < DIRECT_KEYS;
		if (direct)
		{
			if ((uint64) ikey >= col->direct_cap)
			{
				uint64		newcap = Min(Max((uint64) ikey + 1, col->direct_cap * 2), DIRECT_KEYS);

				col->direct = col->direct == NULL ? MemoryContextAllocHuge(pass->cxt, newcap * sizeof(uint32))
					: repalloc_huge(col->direct, newcap * sizeof(uint32));
				memset(col->direct + col->direct_cap, 0, (newcap - col->direct_cap) * sizeof(uint32));
				col->direct_cap = newcap;
			}
			if (col->direct[ikey] != 0)
				return col->direct[ikey] - 1;
			found = false;
			id = &direct_id;
		}
		else
		{
			IntEntry   *e = hash_search(col->table, &ikey, HASH_ENTER, &found);

			id = &e->id;
		}
	}
	else
	{
		text	   *t = DatumGetTextPP(value);
		InternKey	key = {VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)};
		InternEntry *e;

		e = hash_search(col->table, &key, HASH_ENTER, &found);
		if (!found)
		{
			char	   *copy = MemoryContextAlloc(pass->cxt, key.len + 1);

			memcpy(copy, key.str, key.len);
			copy[key.len] = '\0';
			e->key.str = copy;
			str = copy;
		}
		id = &e->id;
	}
	if (!found)
	{
		uint64		cap = col->cap;

		*id = col->n;
		col->names = grow(col->names, &cap, (uint64) col->n + 1, sizeof(char *), pass->cxt);
		col->cap = (uint32) Min(cap, PG_UINT32_MAX);
		col->names[col->n] = col->is_int ? MemoryContextStrdup(pass->cxt, psprintf("%lld", (long long) ikey)) : (char *) str;
		if (direct)
			col->direct[ikey] = col->n + 1;
		col->n++;
		if (col->n == PG_UINT32_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("too many distinct customers or products for the lifecycle pass")));
	}
	return *id;
}

static void
add_purchase(LifecyclePass *pass, TupleTableSlot *slot)
{
	bool		isnull;
	Datum		customer;
	Datum		product;
	Datum		d;
	TimestampTz at;
	double		qty;
	uint32		c,
				p;

	customer = slot_getattr(slot, 1, &isnull);
	if (isnull)
		return;
	product = slot_getattr(slot, 2, &isnull);
	if (isnull)
		return;
	d = slot_getattr(slot, 3, &isnull);
	if (isnull)
		return;
	at = DatumGetTimestampTz(d);
	if (TIMESTAMP_NOT_FINITE(at))
		return;
	d = slot_getattr(slot, 4, &isnull);
	qty = isnull ? 0 : DatumGetFloat8(d);
	if (!isfinite(qty) || qty < 0)
		qty = 0;

	/* the lines of one order come one after the other: same customer */
	if (pass->customer.is_int)
	{
		int64		k = int_key(customer, pass->customer.type);

		if (pass->have_last && pass->last_int == k)
			c = pass->last_id;
		else
		{
			c = intern(pass, &pass->customer, customer);
			pass->have_last = true;
			pass->last_id = c;
			pass->last_int = k;
		}
	}
	else
	{
		text	   *t = DatumGetTextPP(customer);

		if (pass->have_last && VARSIZE_ANY_EXHDR(t) == pass->last_len
			&& memcmp(VARDATA_ANY(t), pass->last_str, pass->last_len) == 0)
			c = pass->last_id;
		else
		{
			c = intern(pass, &pass->customer, PointerGetDatum(t));
			pass->have_last = true;
			pass->last_id = c;
			pass->last_len = VARSIZE_ANY_EXHDR(t);
			if (pass->last_len + 1 > pass->last_cap)
			{
				pass->last_cap = Max(64, (pass->last_len + 1) * 2);
				pass->last_str = pass->last_str == NULL ? MemoryContextAlloc(pass->cxt, pass->last_cap)
					: repalloc(pass->last_str, pass->last_cap);
			}
			memcpy(pass->last_str, VARDATA_ANY(t), pass->last_len);
		}
	}
	p = intern(pass, &pass->product, product);

	if (pass->nev + 1 > pass->ev_cap)
	{
		uint64		cap = pass->ev_cap;
		uint64		cap2 = pass->ev_cap;
		uint64		cap3 = pass->ev_cap;
		uint64		cap4 = pass->ev_cap;

		pass->ev_customer = grow(pass->ev_customer, &cap, pass->nev + 1, sizeof(uint32), pass->cxt);
		pass->ev_product = grow(pass->ev_product, &cap2, pass->nev + 1, sizeof(uint32), pass->cxt);
		pass->ev_at = grow(pass->ev_at, &cap3, pass->nev + 1, sizeof(TimestampTz), pass->cxt);
		pass->ev_qty = grow(pass->ev_qty, &cap4, pass->nev + 1, sizeof(double), pass->cxt);
		pass->ev_cap = cap;
	}
	pass->ev_customer[pass->nev] = c;
	pass->ev_product[pass->nev] = p;
	pass->ev_at[pass->nev] = at;
	pass->ev_qty[pass->nev] = qty;
	pass->nev++;
	if (pass->nev >= PG_UINT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many purchases for the lifecycle pass")));
}

/* the receiver the query's rows are streamed to */
typedef struct PurchaseReceiver
{
	DestReceiver pub;
	LifecyclePass *pass;
} PurchaseReceiver;

static bool
is_int_type(Oid type)
{
	return type == INT8OID || type == INT4OID || type == INT2OID;
}

static void
receiver_startup(DestReceiver *self, int operation, TupleDesc desc)
{
	LifecyclePass *pass = ((PurchaseReceiver *) self)->pass;
	Oid			customer_type = TupleDescAttr(desc, 0)->atttypid;
	Oid			product_type = TupleDescAttr(desc, 1)->atttypid;

	if (desc->natts != 4
		|| !(is_int_type(customer_type) || customer_type == TEXTOID)
		|| !(is_int_type(product_type) || product_type == TEXTOID)
		|| TupleDescAttr(desc, 2)->atttypid != TIMESTAMPTZOID
		|| TupleDescAttr(desc, 3)->atttypid != FLOAT8OID)
		elog(ERROR, "the lifecycle query must return customer and product (integer or text), at timestamptz, quantity float8");
	pass->customer.type = customer_type;
	pass->customer.is_int = is_int_type(customer_type);
	pass->customer.table = pass->customer.is_int ? int_table("automation lifecycle customers", pass->cxt)
		: intern_table("automation lifecycle customers", pass->cxt);
	pass->product.type = product_type;
	pass->product.is_int = is_int_type(product_type);
	pass->product.table = pass->product.is_int ? int_table("automation lifecycle products", pass->cxt)
		: intern_table("automation lifecycle products", pass->cxt);
}

static bool
receiver_receive(TupleTableSlot *slot, DestReceiver *self)
{
	LifecyclePass *pass = ((PurchaseReceiver *) self)->pass;
	MemoryContext old = MemoryContextSwitchTo(pass->batch_cxt);

	add_purchase(pass, slot);
	MemoryContextSwitchTo(old);
	if (++pass->rows_in_batch == LIFECYCLE_BATCH)
	{
		MemoryContextReset(pass->batch_cxt);
		pass->rows_in_batch = 0;
		CHECK_FOR_INTERRUPTS();
	}
	return true;
}

static void
receiver_noop(DestReceiver *self)
{
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

/* purchases of one customer in product, then time order */
static int
cmp_purchase(const void *a, const void *b, void *arg)
{
	LifecyclePass *pass = (LifecyclePass *) arg;
	uint32		x = *(const uint32 *) a;
	uint32		y = *(const uint32 *) b;

	if (pass->ev_product[x] != pass->ev_product[y])
		return pass->ev_product[x] < pass->ev_product[y] ? -1 : 1;
	if (pass->ev_at[x] != pass->ev_at[y])
		return pass->ev_at[x] < pass->ev_at[y] ? -1 : 1;
	return 0;
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

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* read the shop with the privileges of the role that bound it */
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(get_role_oid(bound_by, false), save_sec | SECURITY_LOCAL_USERID_CHANGE);

	{
		PurchaseReceiver receiver;
		SPIExecuteOptions options;
		int			rc;

		memset(&receiver, 0, sizeof(receiver));
		receiver.pub.receiveSlot = receiver_receive;
		receiver.pub.rStartup = receiver_startup;
		receiver.pub.rShutdown = receiver_noop;
		receiver.pub.rDestroy = receiver_noop;
		receiver.pub.mydest = DestNone;
		receiver.pass = &pass;
		memset(&options, 0, sizeof(options));
		options.read_only = true;
		options.dest = (DestReceiver *) &receiver;
		rc = SPI_execute_extended(query, &options);
		if (rc < 0)
			elog(ERROR, "the lifecycle query failed: %s", SPI_result_code_string(rc));
	}
	SetUserIdAndSecContext(save_userid, save_sec);
	SPI_finish();

	old = MemoryContextSwitchTo(pass.cxt);

	/* group the purchases by customer: count, then place */
	start = MemoryContextAllocHuge(pass.cxt, sizeof(uint32) * ((Size) pass.customer.n + 1));
	memset(start, 0, sizeof(uint32) * ((Size) pass.customer.n + 1));
	for (uint64 i = 0; i < pass.nev; i++)
		start[pass.ev_customer[i] + 1]++;
	for (uint32 k = 0; k < pass.customer.n; k++)
		start[k + 1] += start[k];
	order = MemoryContextAllocHuge(pass.cxt, sizeof(uint32) * Max(pass.nev, 1));
	{
		uint32	   *next = MemoryContextAllocHuge(pass.cxt, sizeof(uint32) * Max(pass.customer.n, 1));

		memcpy(next, start, sizeof(uint32) * pass.customer.n);
		for (uint64 i = 0; i < pass.nev; i++)
			order[next[pass.ev_customer[i]]++] = (uint32) i;
		pfree(next);
	}
	if (pass.ev_customer != NULL)
		pfree(pass.ev_customer);

	obs = palloc0(sizeof(Observations) * Max(pass.product.n, 1));

	for (uint32 k = 0; k < pass.customer.n; k++)
	{
		uint32		lo = start[k];
		uint32		hi = start[k + 1];
		uint32		run;

		/* this customer's purchases by product and time */
		if (hi - lo > 1)
			qsort_arg(order + lo, hi - lo, sizeof(uint32), cmp_purchase, &pass);
		if ((k & 0xffff) == 0)
			CHECK_FOR_INTERRUPTS();

		for (run = lo; run < hi;)
		{
			uint32		product = pass.ev_product[order[run]];
			int32		purchases = 0;
			TimestampTz first = 0,
						last = 0;
			double		last_qty = 0;
			double		gap_mean = 0,
						gap_m2 = 0;
			int64		ngaps = 0;
			Datum		values[11];
			bool		nulls[11];
			uint32		i;

			for (i = run; i < hi && pass.ev_product[order[i]] == product; i++)
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
						observe(&obs[product], gap / last_qty, pass.cxt);
				}
				else
					first = at;
				purchases++;
				last = at;
				last_qty = qty;
			}
			run = i;

			memset(nulls, 0, sizeof(nulls));
			values[0] = CStringGetTextDatum(pass.customer.names[k]);
			values[1] = CStringGetTextDatum(pass.product.names[product]);
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
	}

	/* per product: the median days per unit and the spread */
	for (uint32 p = 0; p < pass.product.n; p++)
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
		values[1] = CStringGetTextDatum(pass.product.names[p]);
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
