/*-------------------------------------------------------------------------
 *
 * outbox.c
 *	  The parts of the outbox that SQL cannot do well: reading the shop's
 *	  customers with the binding role's privileges, the retry backoff, and
 *	  the outbox settings.
 *
 * The queue itself -- enqueue, claim, ack, fail, track -- is set-based SQL
 * in sql/install/40_outbox.sql: a claim is one statement (SELECT ... FOR
 * UPDATE SKIP LOCKED, the checks, and the UPDATE that sets the lease), and C
 * would only add a round of SPI around it.  Three things are better here:
 *
 * - The claim re-checks consent and re-reads the recipient's address from
 *   the shop's customers table.  The mailer that calls claim may not read the
 *   shop's tables, and the claim runs as the extension's owner; the read
 *   must run with the privileges of the role that bound the customers, and
 *   PL/pgSQL cannot change the current user inside a SECURITY DEFINER
 *   function.  automation._customer_lookup switches to that role for the one
 *   query, which it builds from the binding with quoted identifiers.
 * - The backoff of a failed message needs a good random jitter.
 * - The settings are C variables; SQL reads them through one function, which
 *   also makes sure the library (and so the settings) is loaded.
 * - Most addresses need neither trimming nor lower-casing, and one look at
 *   their bytes tells so, where btrim with its set of Unicode spaces and
 *   lower with the locale's case mapping take their time for every one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "automation.h"
#include "outbox.h"

/* The first retry waits about a minute; each further one twice as long, up to six hours. */
#define BACKOFF_BASE_SECS	60.0
#define BACKOFF_CAP_SECS	(6 * 3600.0)

int			automation_max_attempts = 8;
int			automation_retention = 30 * 24 * 60;	/* minutes */
int			automation_prune_batch = 100000;

/*
 * The claim asks for customers every time it runs, so the two queries are
 * planned once per session and kept: the one reading the binding, and the
 * one reading the shop, for as long as the binding builds the same text.
 * Kept plans are revalidated by the plan cache when a relation changes.
 */
static SPIPlanPtr source_plan = NULL;
static SPIPlanPtr shop_plan = NULL;
static char *shop_query = NULL;

/*
 * The customer key's type, as the binding names it and as an oid: the name
 * is resolved (a run of the parser) only when it changes.
 */
static char *key_type_name = NULL;
static Oid	key_type_oid = InvalidOid;

PG_FUNCTION_INFO_V1(automation_customer_lookup);
PG_FUNCTION_INFO_V1(automation_backoff);
PG_FUNCTION_INFO_V1(automation_outbox_settings);
PG_FUNCTION_INFO_V1(automation_plain_address);

/* One value of a row of automation.source, as text, or NULL. */
static char *
source_value(HeapTuple tuple, TupleDesc desc, int col)
{
	return SPI_getvalue(tuple, desc, col);
}

/*
 * automation._customer_lookup(keys text[])
 *	  RETURNS TABLE (customer_key text, email text, phone text, consent boolean)
 *
 * Reads the bound customers whose keys (as text) are given, as the role
 * that bound them.  consent is true when the consent column is boolean true,
 * or a timestamp or date that is set.  phone is NULL when no phone column is
 * bound.  Returns no rows when no customers are bound.
 */
Datum
automation_customer_lookup(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HeapTuple	src;
	TupleDesc	srcdesc;
	char	   *schema,
			   *relname,
			   *key_col,
			   *email_col,
			   *phone_col,
			   *consent_col,
			   *key_type_text,
			   *bound_by;
	Oid			key_type;
	Oid			relid;
	Oid			consent_type;
	StringInfoData query;
	Oid			argtypes[1] = {TEXTARRAYOID};
	Datum		args[1];
	Oid			save_userid;
	int			save_sec;
	int			ret;
	uint64		i;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0))
		PG_RETURN_VOID();
	args[0] = PG_GETARG_DATUM(0);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (source_plan == NULL)
	{
		SPIPlanPtr	plan;

		plan = SPI_prepare("SELECT relation_schema, relation_name, columns ->> 'customer',"
						   " columns ->> 'email', columns ->> 'phone', columns ->> 'consent',"
						   " keys ->> 'customer', bound_by"
						   " FROM automation.source WHERE kind = 'customers'",
						   0, NULL);
		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "cannot prepare the query of the customers binding: %s",
				 SPI_result_code_string(SPI_result));
		source_plan = plan;
	}
	ret = SPI_execute_plan(source_plan, NULL, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "cannot read the customers binding: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
	{
		SPI_finish();
		PG_RETURN_VOID();
	}

	src = SPI_tuptable->vals[0];
	srcdesc = SPI_tuptable->tupdesc;
	schema = source_value(src, srcdesc, 1);
	relname = source_value(src, srcdesc, 2);
	key_col = source_value(src, srcdesc, 3);
	email_col = source_value(src, srcdesc, 4);
	phone_col = source_value(src, srcdesc, 5);
	consent_col = source_value(src, srcdesc, 6);
	key_type_text = source_value(src, srcdesc, 7);
	bound_by = source_value(src, srcdesc, 8);
	if (key_type_text == NULL)
		elog(ERROR, "the customers binding names no key type");
	if (key_type_name == NULL || strcmp(key_type_name, key_type_text) != 0)
	{
		key_type_oid = DatumGetObjectId(DirectFunctionCall1(regtypein, CStringGetDatum(key_type_text)));
		if (key_type_name != NULL)
			pfree(key_type_name);
		key_type_name = MemoryContextStrdup(TopMemoryContext, key_type_text);
	}
	key_type = key_type_oid;

	/* Boolean consent must be true; a timestamp or date must be set. */
	relid = get_relname_relid(relname, get_namespace_oid(schema, false));
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("bound customers relation %s does not exist",
						quote_qualified_identifier(schema, relname)),
				 errhint("Bind the customers again with automation.bind_customers().")));
	consent_type = getBaseType(get_atttype(relid, get_attnum(relid, consent_col)));

	initStringInfo(&query);
	appendStringInfo(&query, "SELECT c.%s::pg_catalog.text, c.%s::pg_catalog.text, ",
					 quote_identifier(key_col), quote_identifier(email_col));
	if (phone_col)
		appendStringInfo(&query, "c.%s::pg_catalog.text, ", quote_identifier(phone_col));
	else
		appendStringInfoString(&query, "NULL::pg_catalog.text, ");
	appendStringInfo(&query, "c.%s %s FROM %s c WHERE c.%s = ANY ($1::%s[])",
					 quote_identifier(consent_col),
					 consent_type == BOOLOID ? "IS TRUE" : "IS NOT NULL",
					 quote_qualified_identifier(schema, relname),
					 quote_identifier(key_col),
					 format_type_be_qualified(key_type));

	if (shop_plan == NULL || strcmp(shop_query, query.data) != 0)
	{
		SPIPlanPtr	plan;

		if (shop_plan != NULL)
		{
			SPI_freeplan(shop_plan);
			shop_plan = NULL;
			pfree(shop_query);
		}
		plan = SPI_prepare(query.data, 1, argtypes);
		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "cannot prepare the query of the bound customers: %s",
				 SPI_result_code_string(SPI_result));
		shop_query = MemoryContextStrdup(TopMemoryContext, query.data);
		shop_plan = plan;
	}

	/*
	 * The shop's table is read with the binding role's privileges, no more:
	 * they are checked when the plan runs, as this user.
	 */
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(get_role_oid(bound_by, false),
						   save_sec | SECURITY_LOCAL_USERID_CHANGE);
	ret = SPI_execute_plan(shop_plan, args, NULL, true, 0);
	SetUserIdAndSecContext(save_userid, save_sec);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "cannot read the bound customers: %s", SPI_result_code_string(ret));

	for (i = 0; i < SPI_processed; i++)
	{
		Datum		values[4];
		bool		nulls[4];
		int			col;

		for (col = 0; col < 4; col++)
			values[col] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
										col + 1, &nulls[col]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}

	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * automation._backoff(attempts int) RETURNS interval
 *
 * How long to wait before the next try of a message that failed after
 * "attempts" handouts: exponential (a minute, two, four, ... up to six
 * hours) with "equal jitter" -- half the delay fixed, the other half
 * random -- so that messages that failed together do not return together
 * and hammer the mail server in lockstep.
 */
Datum
automation_backoff(PG_FUNCTION_ARGS)
{
	int32		attempts = PG_ARGISNULL(0) ? 1 : PG_GETARG_INT32(0);
	double		delay;
	Interval   *result;

	if (attempts < 1)
		attempts = 1;
	delay = BACKOFF_BASE_SECS * pow(2.0, Min(attempts - 1, 30));
	if (delay > BACKOFF_CAP_SECS)
		delay = BACKOFF_CAP_SECS;
	delay = delay / 2.0 + pg_prng_double(&pg_global_prng_state) * delay / 2.0;

	result = (Interval *) palloc0(sizeof(Interval));
	result->time = (TimeOffset) (delay * USECS_PER_SEC);
	PG_RETURN_INTERVAL_P(result);
}

/*
 * automation._outbox_settings(OUT max_attempts int, OUT retention interval)
 *
 * The outbox settings as SQL values.  Calling it loads the library, so the
 * settings are defined with their checks even in a session that has not
 * called any other C function yet.
 */
Datum
automation_outbox_settings(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	Interval   *retention;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "automation._outbox_settings must return a record");
	desc = BlessTupleDesc(desc);

	retention = (Interval *) palloc0(sizeof(Interval));
	retention->time = (TimeOffset) automation_retention * 60 * USECS_PER_SEC;

	values[0] = Int32GetDatum(automation_max_attempts);
	values[1] = IntervalPGetDatum(retention);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/*
 * automation._plain_address(a text) RETURNS boolean
 *
 * Whether an address is as automation._address and automation._recipient
 * would leave it: ASCII alone, no upper-case letter, and neither a space
 * nor a control character at either end.  Every white space those trim is
 * ASCII's (the space and the controls \t to \r) or a character beyond
 * ASCII (whose bytes are none of them ASCII, in any server encoding), and
 * lower-casing leaves lower-case ASCII as it is in every locale; so such
 * an address is its own trimmed and lower-cased form.  (The ends are held
 * to no byte up to the space, not to the trimmed set itself, which
 * sql/install/40_outbox.sql keeps.)
 */
Datum
automation_plain_address(PG_FUNCTION_ARGS)
{
	text	   *a = PG_GETARG_TEXT_PP(0);
	const unsigned char *p = (const unsigned char *) VARDATA_ANY(a);
	int			len = VARSIZE_ANY_EXHDR(a);
	int			i;

	if (len > 0 && (p[0] <= ' ' || p[len - 1] <= ' '))
		PG_RETURN_BOOL(false);
	for (i = 0; i < len; i++)
	{
		if (p[i] >= 0x80 || (p[i] >= 'A' && p[i] <= 'Z'))
			PG_RETURN_BOOL(false);
	}
	PG_RETURN_BOOL(true);
}
