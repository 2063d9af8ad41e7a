/*-------------------------------------------------------------------------
 *
 * related.c
 *	  Related products: "customers who bought this also bought", computed
 *	  from the shop's order lines in one pass.
 *
 * automation._related_pass() reads the query that
 * automation.refresh_related_products() builds from the bindings
 * (sql/install/70_related.sql) through an SPI cursor, fetching in batches,
 * with the privileges of the role that bound the orders.  Each row is one
 * counted order line: the customer (in the shop's key type), the product
 * (as text) and when it was bought.  Rows may come in any order.
 *
 * The pass folds the lines into one basket per customer: the distinct
 * products the customer bought, at most basket_cap of them.  A customer who
 * bought more keeps the basket_cap products bought most recently (to the
 * minute; of products last bought in the same minute, those with the
 * smaller key in byte order), so that one reseller with thousands of
 * products neither dominates the counts nor makes the work grow with the
 * square of their catalogue, and the basket does not depend on the order
 * the lines come in.
 *
 * From the baskets it counts, for every product x, the customers who bought
 * it (n_x), and for every pair the customers who bought both (c_xy).  Pairs
 * are never kept in a table of their own: the baskets are turned around into
 * an index from product to customers, and for one product x at a time the
 * co-purchases are counted in a dense array over the products, the best k
 * are kept and the array is cleared for the next product.  Memory is 8
 * bytes per product in a basket and a hash entry per customer while the
 * lines are read, then the baskets twice as arrays of int32 plus a few
 * arrays the size of the catalogue, whatever the number of pairs.
 *
 * The score of y for x is the cosine of the two products' buyer sets,
 * shrunk toward 0 when few customers support it:
 *
 *		score = c_xy / sqrt(n_x * n_y) * c_xy / (c_xy + shrink)
 *
 * The cosine keeps best-sellers, which everyone buys with everything, from
 * outranking products genuinely bought together; the shrinkage keeps a
 * pair bought together by one customer from scoring 1.  Pairs bought
 * together by fewer than min_customers customers are left out.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/typcache.h"

#include "related.h"

PG_FUNCTION_INFO_V1(automation_related_pass);
PG_FUNCTION_INFO_V1(automation_related_pass_counts);

#define RELATED_BATCH		10000
#define RELATED_MAX_CAP		10000
#define RELATED_MAX_K		1000

/* One product in a customer's basket, with the minute it was last bought. */
typedef struct BasketItem
{
	int32		product;
	int32		minute;
} BasketItem;

/* A customer: the key in the shop's type and the basket. */
typedef struct Customer
{
	Datum		key;
	uint32		hash;
	char		status;
	bool		capped;			/* bought more distinct products than the cap */
	int32		nitems;
	int32		size;
	BasketItem *items;
} Customer;

/* A product key as text (not NUL-terminated). */
typedef struct ProductKey
{
	const char *data;
	int			len;
} ProductKey;

typedef struct Product
{
	ProductKey	key;
	uint32		hash;
	char		status;
	int32		id;
} Product;

typedef struct RelatedPass RelatedPass;

static uint32 customer_hash(RelatedPass *pass, Datum key);
static bool customer_equal(RelatedPass *pass, Datum a, Datum b);

#define SH_PREFIX customers
#define SH_ELEMENT_TYPE Customer
#define SH_KEY_TYPE Datum
#define SH_KEY key
#define SH_HASH_KEY(tb, k) customer_hash((RelatedPass *) (tb)->private_data, k)
#define SH_EQUAL(tb, a, b) customer_equal((RelatedPass *) (tb)->private_data, a, b)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a) a->hash
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

#define SH_PREFIX products
#define SH_ELEMENT_TYPE Product
#define SH_KEY_TYPE ProductKey
#define SH_KEY key
#define SH_HASH_KEY(tb, k) hash_bytes((const unsigned char *) (k).data, (k).len)
#define SH_EQUAL(tb, a, b) ((a).len == (b).len && memcmp((a).data, (b).data, (a).len) == 0)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a) a->hash
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

struct RelatedPass
{
	MemoryContext cxt;			/* the whole pass */
	MemoryContext basket_cxt;	/* the customers' hash table and baskets */

	/* the customer key's type */
	Oid			key_type;
	int16		key_len;
	bool		key_byval;
	bool		key_is_int;		/* compared as the Datum itself */
	Oid			key_collation;
	FmgrInfo	hash_fn;
	FmgrInfo	eq_fn;

	/* settings of this pass */
	int			k;
	int			min_customers;
	int			basket_cap;
	double		shrink;

	customers_hash *customers;
	products_hash *products;
	ProductKey *names;			/* product id -> key */
	int32		nproducts;
	int32		names_size;
};

/* counts of the last pass in this session, for automation._related_pass_counts() */
static int64 last_lines_read = 0;
static int64 last_customers = 0;
static int64 last_capped = 0;
static int64 last_products = 0;
static int64 last_pairs = 0;

/*
 * Hash and equality of customer keys: integer keys as the value itself,
 * any other type through its default hash opclass.
 */
static uint32
customer_hash(RelatedPass *pass, Datum key)
{
	if (pass->key_is_int)
	{
		uint64		v = DatumGetUInt64(key);

		return murmurhash32((uint32) v ^ (uint32) (v >> 32));
	}
	return DatumGetUInt32(FunctionCall1Coll(&pass->hash_fn, pass->key_collation, key));
}

static bool
customer_equal(RelatedPass *pass, Datum a, Datum b)
{
	if (pass->key_is_int)
		return a == b;
	return DatumGetBool(FunctionCall2Coll(&pass->eq_fn, pass->key_collation, a, b));
}

/*
 * The number of a product, given its key as text; a product seen for the
 * first time gets the next number and a copy of its key.
 */
static int32
product_id(RelatedPass *pass, const char *data, int len)
{
	ProductKey	key = {data, len};
	Product    *p;
	bool		found;

	p = products_insert(pass->products, key, &found);
	if (!found)
	{
		char	   *copy = MemoryContextAlloc(pass->cxt, len + 1);

		memcpy(copy, data, len);
		copy[len] = '\0';
		p->key.data = copy;
		if (pass->nproducts == pass->names_size)
		{
			pass->names_size *= 2;
			pass->names = repalloc_huge(pass->names, sizeof(ProductKey) * pass->names_size);
		}
		p->id = pass->nproducts++;
		pass->names[p->id] = p->key;
	}
	return p->id;
}

/*
 * Whether basket item a was bought more recently than b: a later minute,
 * or, bought in the same minute, the smaller product key in byte order.
 */
static bool
more_recent(RelatedPass *pass, int32 a_product, int32 a_minute, const BasketItem *b)
{
	ProductKey	x;
	ProductKey	y;
	int			r;

	if (a_minute != b->minute)
		return a_minute > b->minute;
	x = pass->names[a_product];
	y = pass->names[b->product];
	r = memcmp(x.data, y.data, Min(x.len, y.len));
	return r < 0 || (r == 0 && x.len < y.len);
}

/*
 * Puts a product into a customer's basket.  A product already there keeps
 * the latest minute it was bought; a full basket gives up its least
 * recently bought product for a more recent one, so that it ends up with
 * the basket_cap most recent products whatever order the lines came in.
 */
static void
basket_add(RelatedPass *pass, Customer *c, int32 product, int32 minute)
{
	int			oldest = 0;

	for (int i = 0; i < c->nitems; i++)
	{
		if (c->items[i].product == product)
		{
			if (minute > c->items[i].minute)
				c->items[i].minute = minute;
			return;
		}
	}
	if (c->nitems < pass->basket_cap)
	{
		if (c->nitems == c->size)
		{
			c->size = c->size == 0 ? 4 : Min(c->size * 2, pass->basket_cap);
			if (c->items == NULL)
				c->items = MemoryContextAlloc(pass->basket_cxt, sizeof(BasketItem) * c->size);
			else
				c->items = repalloc(c->items, sizeof(BasketItem) * c->size);
		}
		c->items[c->nitems].product = product;
		c->items[c->nitems].minute = minute;
		c->nitems++;
		return;
	}
	c->capped = true;
	for (int i = 1; i < c->nitems; i++)
		if (more_recent(pass, c->items[oldest].product, c->items[oldest].minute, &c->items[i]))
			oldest = i;
	if (more_recent(pass, product, minute, &c->items[oldest]))
	{
		c->items[oldest].product = product;
		c->items[oldest].minute = minute;
	}
}

/* One order line: customer, product as text, time bought. */
static void
line_row(RelatedPass *pass, HeapTuple tuple, TupleDesc desc)
{
	bool		isnull;
	Datum		key;
	Datum		product;
	TimestampTz at;
	int64		minute;
	text	   *t;
	Customer   *c;
	bool		found;
	int32		id;

	key = SPI_getbinval(tuple, desc, 1, &isnull);
	if (isnull)
		return;
	product = SPI_getbinval(tuple, desc, 2, &isnull);
	if (isnull)
		return;
	at = DatumGetTimestampTz(SPI_getbinval(tuple, desc, 3, &isnull));
	if (isnull)
		return;
	last_lines_read++;

	t = (text *) PG_DETOAST_DATUM_PACKED(product);
	id = product_id(pass, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));

	minute = at / USECS_PER_MINUTE;
	if (at % USECS_PER_MINUTE < 0)
		minute--;				/* floor, also before 2000 */
	minute = Max(Min(minute, PG_INT32_MAX), PG_INT32_MIN);

	c = customers_insert(pass->customers, key, &found);
	if (!found)
	{
		c->capped = false;
		c->nitems = 0;
		c->size = 0;
		c->items = NULL;
		if (!pass->key_byval)
			c->key = datumCopy(key, false, pass->key_len);
	}
	basket_add(pass, c, id, (int32) minute);
}

/*
 * Reads the lines query through a cursor with now as $1, in batches,
 * folding every row into the baskets.
 */
static void
read_lines(RelatedPass *pass, const char *query, TimestampTz now, MemoryContext row_cxt)
{
	Portal		portal;
	Oid			argtypes[1] = {TIMESTAMPTZOID};
	Datum		values[1] = {TimestampTzGetDatum(now)};

	portal = SPI_cursor_open_with_args(NULL, query, 1, argtypes, values, NULL, true, 0);
	for (;;)
	{
		MemoryContext old;

		SPI_cursor_fetch(portal, true, RELATED_BATCH);
		if (SPI_processed == 0)
			break;
		old = MemoryContextSwitchTo(row_cxt);
		for (uint64 i = 0; i < SPI_processed; i++)
			line_row(pass, SPI_tuptable->vals[i], SPI_tuptable->tupdesc);
		MemoryContextSwitchTo(old);
		MemoryContextReset(row_cxt);
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_freetuptable(SPI_tuptable);
	SPI_cursor_close(portal);
}

/* A related product of the product at hand. */
typedef struct Candidate
{
	int32		product;
	int32		customers;
	double		score;
} Candidate;

/* the product names, for breaking ties in the comparisons below */
static ProductKey *cmp_names = NULL;

static int
name_cmp(int32 a, int32 b)
{
	ProductKey	x = cmp_names[a];
	ProductKey	y = cmp_names[b];
	int			r = memcmp(x.data, y.data, Min(x.len, y.len));

	if (r != 0)
		return r;
	return (x.len > y.len) - (x.len < y.len);
}

/*
 * Orders candidates best first: higher score, then more customers, then
 * the product key in byte order, so that the result never depends on the
 * order the shop's rows came in.
 */
static int
candidate_cmp(const void *a, const void *b)
{
	const Candidate *x = a;
	const Candidate *y = b;

	if (x->score != y->score)
		return x->score > y->score ? -1 : 1;
	if (x->customers != y->customers)
		return x->customers > y->customers ? -1 : 1;
	return name_cmp(x->product, y->product);
}

/* Sifts the worst of the kept candidates to the top of the heap. */
static void
heap_sift_down(Candidate *heap, int n, int i)
{
	for (;;)
	{
		int			worst = i;
		int			l = 2 * i + 1;
		int			r = l + 1;
		Candidate	tmp;

		if (l < n && candidate_cmp(&heap[l], &heap[worst]) > 0)
			worst = l;
		if (r < n && candidate_cmp(&heap[r], &heap[worst]) > 0)
			worst = r;
		if (worst == i)
			return;
		tmp = heap[i];
		heap[i] = heap[worst];
		heap[worst] = tmp;
		i = worst;
	}
}

static void
heap_sift_up(Candidate *heap, int i)
{
	while (i > 0)
	{
		int			parent = (i - 1) / 2;
		Candidate	tmp;

		if (candidate_cmp(&heap[i], &heap[parent]) <= 0)
			return;
		tmp = heap[i];
		heap[i] = heap[parent];
		heap[parent] = tmp;
		i = parent;
	}
}

/*
 * Turns the baskets into the related products of every product and puts
 * them into the tuplestore: at most k rows per product, best first.
 */
static void
compute_related(RelatedPass *pass, Tuplestorestate *store, TupleDesc desc)
{
	int32		np = pass->nproducts;
	int64	   *buyers;			/* n_x */
	int64		nbaskets = 0;	/* customers with two products or more */
	int64		nitems = 0;
	int64	   *boff;
	int32	   *bitems;
	int64	   *ioff;
	int32	   *icust;
	int32	   *count;
	int32	   *touched;
	Candidate  *heap;
	customers_iterator it;
	Customer   *c;
	int64		b;

	buyers = MemoryContextAllocHuge(pass->cxt, sizeof(int64) * Max(np, 1));
	memset(buyers, 0, sizeof(int64) * Max(np, 1));

	/* n_x over every basket; only baskets of two or more hold pairs */
	customers_start_iterate(pass->customers, &it);
	while ((c = customers_iterate(pass->customers, &it)) != NULL)
	{
		last_customers++;
		if (c->capped)
			last_capped++;
		for (int i = 0; i < c->nitems; i++)
			buyers[c->items[i].product]++;
		if (c->nitems >= 2)
		{
			nbaskets++;
			nitems += c->nitems;
		}
	}
	last_products = np;

	/* the baskets, flat: customer b bought bitems[boff[b] .. boff[b + 1]) */
	boff = MemoryContextAllocHuge(pass->cxt, sizeof(int64) * (nbaskets + 1));
	bitems = MemoryContextAllocHuge(pass->cxt, sizeof(int32) * Max(nitems, 1));
	ioff = MemoryContextAllocHuge(pass->cxt, sizeof(int64) * (np + 1));
	memset(ioff, 0, sizeof(int64) * (np + 1));
	b = 0;
	boff[0] = 0;
	customers_start_iterate(pass->customers, &it);
	while ((c = customers_iterate(pass->customers, &it)) != NULL)
	{
		if (c->nitems < 2)
			continue;
		for (int i = 0; i < c->nitems; i++)
		{
			bitems[boff[b] + i] = c->items[i].product;
			ioff[c->items[i].product + 1]++;
		}
		boff[b + 1] = boff[b] + c->nitems;
		b++;
	}
	/* the customers and their baskets are no longer needed */
	MemoryContextDelete(pass->basket_cxt);
	pass->basket_cxt = NULL;
	pass->customers = NULL;
	CHECK_FOR_INTERRUPTS();

	/* the other way round: product x was bought by icust[ioff[x] .. ioff[x + 1]) */
	for (int32 x = 0; x < np; x++)
		ioff[x + 1] += ioff[x];
	icust = MemoryContextAllocHuge(pass->cxt, sizeof(int32) * Max(nitems, 1));
	{
		int64	   *fill = MemoryContextAllocHuge(pass->cxt, sizeof(int64) * Max(np, 1));

		memcpy(fill, ioff, sizeof(int64) * np);
		for (b = 0; b < nbaskets; b++)
			for (int64 i = boff[b]; i < boff[b + 1]; i++)
				icust[fill[bitems[i]]++] = (int32) b;
		pfree(fill);
	}

	count = MemoryContextAllocHuge(pass->cxt, sizeof(int32) * Max(np, 1));
	memset(count, 0, sizeof(int32) * Max(np, 1));
	touched = MemoryContextAllocHuge(pass->cxt, sizeof(int32) * Max(np, 1));
	heap = MemoryContextAlloc(pass->cxt, sizeof(Candidate) * pass->k);
	cmp_names = pass->names;

	for (int32 x = 0; x < np; x++)
	{
		int32		ntouched = 0;
		int			nheap = 0;

		/* co-purchases of x with every other product */
		for (int64 j = ioff[x]; j < ioff[x + 1]; j++)
		{
			int32		cust = icust[j];

			for (int64 i = boff[cust]; i < boff[cust + 1]; i++)
			{
				int32		y = bitems[i];

				if (y != x && count[y]++ == 0)
					touched[ntouched++] = y;
			}
		}
		last_pairs += ntouched;

		/* the best k */
		for (int32 t = 0; t < ntouched; t++)
		{
			int32		y = touched[t];
			int32		cxy = count[y];
			Candidate	cand;

			count[y] = 0;
			if (cxy < pass->min_customers)
				continue;
			cand.product = y;
			cand.customers = cxy;
			cand.score = (double) cxy / sqrt((double) buyers[x] * (double) buyers[y]) *
				((double) cxy / ((double) cxy + pass->shrink));
			if (nheap < pass->k)
			{
				heap[nheap] = cand;
				heap_sift_up(heap, nheap++);
			}
			else if (candidate_cmp(&cand, &heap[0]) < 0)
			{
				heap[0] = cand;
				heap_sift_down(heap, nheap, 0);
			}
		}

		if (nheap > 0)
		{
			Datum		values[4];
			bool		nulls[4] = {false, false, false, false};
			text	   *product = cstring_to_text_with_len(pass->names[x].data, pass->names[x].len);

			qsort(heap, nheap, sizeof(Candidate), candidate_cmp);
			values[0] = PointerGetDatum(product);
			for (int h = 0; h < nheap; h++)
			{
				text	   *related = cstring_to_text_with_len(pass->names[heap[h].product].data,
															   pass->names[heap[h].product].len);

				values[1] = PointerGetDatum(related);
				values[2] = Float8GetDatum(heap[h].score);
				values[3] = Int64GetDatum(heap[h].customers);
				tuplestore_putvalues(store, desc, values, nulls);
				pfree(related);
			}
			pfree(product);
		}
		if ((x & 255) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	cmp_names = NULL;
	last_pairs /= 2;
}

/*
 * automation._related_pass(lines_query text, now timestamptz, k integer,
 *                          min_customers integer, basket_cap integer,
 *                          shrink double precision, bound_by name)
 *   RETURNS TABLE (product text, related text, score double precision,
 *                  customers bigint)
 *
 * lines_query returns (customer key, product as text, bought at
 * timestamptz) for every counted order line, with $1 the time up to which
 * lines count.  Returns the k best related products of every product.
 */
Datum
automation_related_pass(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *query;
	TimestampTz now;
	char	   *bound_by;
	RelatedPass pass;
	MemoryContext row_cxt;
	SPIPlanPtr	plan;
	Oid			argtype = TIMESTAMPTZOID;
	TupleDesc	desc;
	TypeCacheEntry *tce;
	Oid			save_userid;
	int			save_sec;

	for (int i = 0; i < 7; i++)
		if (PG_ARGISNULL(i))
			elog(ERROR, "automation._related_pass called with a NULL argument");

	query = text_to_cstring(PG_GETARG_TEXT_PP(0));
	now = PG_GETARG_TIMESTAMPTZ(1);
	memset(&pass, 0, sizeof(pass));
	pass.k = PG_GETARG_INT32(2);
	pass.min_customers = PG_GETARG_INT32(3);
	pass.basket_cap = PG_GETARG_INT32(4);
	pass.shrink = PG_GETARG_FLOAT8(5);
	bound_by = NameStr(*PG_GETARG_NAME(6));
	if (pass.k < 1 || pass.k > RELATED_MAX_K)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("related products kept per product must be between 1 and %d", RELATED_MAX_K)));
	if (pass.min_customers < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("minimum customers of a related pair must be at least 1")));
	if (pass.basket_cap < 2 || pass.basket_cap > RELATED_MAX_CAP)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("basket cap must be between 2 and %d", RELATED_MAX_CAP)));
	if (!(pass.shrink >= 0 && pass.shrink < 1e9))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("shrinkage must be a number from 0 up")));

	last_lines_read = last_customers = last_capped = last_products = last_pairs = 0;

	pass.cxt = AllocSetContextCreate(CurrentMemoryContext, "automation related pass",
									 ALLOCSET_DEFAULT_SIZES);
	pass.basket_cxt = AllocSetContextCreate(pass.cxt, "automation related baskets",
											ALLOCSET_DEFAULT_SIZES);
	row_cxt = AllocSetContextCreate(pass.cxt, "automation related row",
									ALLOCSET_DEFAULT_SIZES);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* learn the customer key's type from the query itself */
	plan = SPI_prepare(query, 1, &argtype);
	if (plan == NULL)
		elog(ERROR, "cannot prepare the order lines query: %s", SPI_result_code_string(SPI_result));
	{
		List	   *sources = SPI_plan_get_plan_sources(plan);
		CachedPlanSource *src = (CachedPlanSource *) linitial(sources);

		desc = src->resultDesc;
	}
	if (desc == NULL || desc->natts != 3 || TupleDescAttr(desc, 1)->atttypid != TEXTOID ||
		TupleDescAttr(desc, 2)->atttypid != TIMESTAMPTZOID)
		elog(ERROR, "the order lines query must return a customer key, a product as text and a timestamptz");
	pass.key_type = TupleDescAttr(desc, 0)->atttypid;
	SPI_freeplan(plan);

	get_typlenbyval(pass.key_type, &pass.key_len, &pass.key_byval);
	switch (getBaseType(pass.key_type))
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case OIDOID:
			pass.key_is_int = true;
			break;
		default:
			tce = lookup_type_cache(getBaseType(pass.key_type),
									TYPECACHE_HASH_PROC_FINFO | TYPECACHE_EQ_OPR_FINFO);
			if (!OidIsValid(tce->hash_proc) || !OidIsValid(tce->eq_opr))
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_FUNCTION),
						 errmsg("customer key type %s cannot be hashed", format_type_be(pass.key_type))));
			fmgr_info_copy(&pass.hash_fn, &tce->hash_proc_finfo, pass.cxt);
			fmgr_info_copy(&pass.eq_fn, &tce->eq_opr_finfo, pass.cxt);
			pass.key_collation = type_is_collatable(pass.key_type) ? DEFAULT_COLLATION_OID : InvalidOid;
			break;
	}

	pass.customers = customers_create(pass.basket_cxt, 1024, &pass);
	pass.products = products_create(pass.cxt, 1024, &pass);
	pass.names_size = 1024;
	pass.names = MemoryContextAlloc(pass.cxt, sizeof(ProductKey) * pass.names_size);

	/* read the shop with the privileges of the role that bound it */
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(get_role_oid(bound_by, false), save_sec | SECURITY_LOCAL_USERID_CHANGE);
	read_lines(&pass, query, now, row_cxt);
	SetUserIdAndSecContext(save_userid, save_sec);
	SPI_finish();

	InitMaterializedSRF(fcinfo, 0);
	compute_related(&pass, rsinfo->setResult, rsinfo->setDesc);

	MemoryContextDelete(pass.cxt);
	return (Datum) 0;
}

/*
 * automation._related_pass_counts(): what the last pass of this session
 * read: order lines, customers, customers whose basket was capped,
 * products, and pairs of products bought together by at least one customer.
 */
Datum
automation_related_pass_counts(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "automation._related_pass_counts must return a composite type");
	tupdesc = BlessTupleDesc(tupdesc);
	values[0] = Int64GetDatum(last_lines_read);
	values[1] = Int64GetDatum(last_customers);
	values[2] = Int64GetDatum(last_capped);
	values[3] = Int64GetDatum(last_products);
	values[4] = Int64GetDatum(last_pairs);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
