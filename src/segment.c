/*-------------------------------------------------------------------------
 *
 * segment.c
 *	  Checking and evaluating segment predicates.
 *
 * A user segment is a SQL boolean expression over automation.customer_profile
 * (alias p) and the bound customers relation (alias customer).
 * automation.define_segment() (sql/install/30_segment.sql) embeds it in one
 * query and asks automation._check_predicate() whether that query is still
 * the query it was built to be: one statement, reading exactly those
 * relations, no subquery, no volatile function, and a boolean result.
 * Anything else -- a second statement smuggled in after a semicolon, a
 * comment that hides the FROM clause, a write -- is rejected with a clear
 * error when the segment is defined.
 *
 * automation._select_as() evaluates a segment's query with the privileges of
 * the role that defined it, never more, in a read-only state, so that even a
 * function that slipped through cannot write.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "nodes/parsenodes.h"
#include "optimizer/optimizer.h"
#include "parser/parser.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/plancache.h"
#include "utils/tuplestore.h"

#include "segment.h"

PG_FUNCTION_INFO_V1(automation_check_predicate);
PG_FUNCTION_INFO_V1(automation_select_as);

/*
 * Becomes role for a segment's query: read-only, as a security-restricted
 * operation (no SET ROLE, no temporary objects), and with every setting the
 * query may change -- set_config() in a function it calls, say -- undone by
 * unrestrict(), so that nothing of it outlives the query in the session
 * that evaluated it (the tick's).
 */
static void
restrict_to(const char *role, Oid *save_userid, int *save_sec, int *nest)
{
	Oid			roleid = get_role_oid(role, false);

	*nest = NewGUCNestLevel();
	(void) set_config_option("transaction_read_only", "on", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	GetUserIdAndSecContext(save_userid, save_sec);
	SetUserIdAndSecContext(roleid, *save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
}

static void
unrestrict(Oid save_userid, int save_sec, int nest)
{
	SetUserIdAndSecContext(save_userid, save_sec);
	AtEOXact_GUC(false, nest);
}

static void
reject(const char *why, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("segment predicate %s", why),
			 errdetail("A predicate is one boolean expression over the columns of automation.customer_profile (alias p) and of the bound customers (alias customer)."),
			 hint ? errhint("%s", hint) : 0));
}

/*
 * automation._check_predicate(query text, relations regclass[], role name)
 *
 * query is "SELECT p.customer_key, (<predicate>) FROM ..." as built by
 * define_segment(); relations are the relations it must read, and nothing
 * else.  Raises an error unless it is exactly that, or unless it runs as
 * role, the role it will be evaluated as.
 */
Datum
automation_check_predicate(PG_FUNCTION_ARGS)
{
	char	   *query = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ArrayType  *rels = PG_GETARG_ARRAYTYPE_P(1);
	Datum	   *relids;
	bool	   *relnulls;
	int			nrels;
	SPIPlanPtr	plan;
	List	   *sources;
	CachedPlanSource *src;
	Query	   *q;
	TargetEntry *tle;
	ListCell   *lc;
	int			seen = 0;
	int			nest;

	char	   *role = NameStr(*PG_GETARG_NAME(2));
	Oid			save_userid;
	int			save_sec;

	deconstruct_array(rels, OIDOID, sizeof(Oid), true, TYPALIGN_INT, &relids, &relnulls, &nrels);

	/* a second statement smuggled in is refused before anything is analysed */
	if (list_length(raw_parser(query, RAW_PARSE_DEFAULT)) != 1)
		reject("is more than one expression", "Remove the semicolon: a predicate cannot run statements.");

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = SPI_prepare(query, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "cannot prepare the segment query: %s", SPI_result_code_string(SPI_result));
	sources = SPI_plan_get_plan_sources(plan);
	if (list_length(sources) != 1)
		reject("is more than one expression", "Remove the semicolon: a predicate cannot run statements.");
	src = linitial(sources);
	if (list_length(src->query_list) != 1)
		reject("is more than one expression", NULL);
	q = linitial_node(Query, src->query_list);

	if (q->commandType != CMD_SELECT || q->utilityStmt != NULL || q->cteList != NIL ||
		q->setOperations != NULL || q->jointree->quals != NULL || q->groupClause != NIL ||
		q->havingQual != NULL || q->sortClause != NIL || q->limitCount != NULL ||
		q->limitOffset != NULL || q->distinctClause != NIL || q->rowMarks != NIL ||
		q->hasAggs || q->hasWindowFuncs || q->hasTargetSRFs ||
		list_length(q->targetList) != 2)
		reject("is not a single expression", "Check the parentheses and quotes, and leave out comments.");
	if (q->hasSubLinks)
		reject("must not contain a subquery", "Refer to the columns of the profile and of the customer directly.");

	foreach(lc, q->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);
		bool		expected = false;

		if (rte->rtekind == RTE_JOIN)
			continue;
		if (rte->rtekind == RTE_RELATION)
			for (int i = 0; i < nrels; i++)
				if (DatumGetObjectId(relids[i]) == rte->relid)
					expected = true;
		if (!expected)
			reject("reads another relation", "A predicate reads only the profile and the bound customers.");
		seen++;
	}
	if (seen != nrels)
		reject("is not a single expression", "Check the parentheses and quotes, and leave out comments.");

	tle = lsecond_node(TargetEntry, q->targetList);
	if (exprType((Node *) tle->expr) != BOOLOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("segment predicate must be of type boolean, not type %s",
						format_type_be(exprType((Node *) tle->expr))),
				 errhint("Compare the value with something, e.g. total_spent > 100.")));
	if (contain_volatile_functions((Node *) tle->expr))
		reject("must not call volatile functions",
			   "Use only immutable and stable functions: a predicate reads, it never writes or draws random numbers.");

	/*
	 * Run it on one row, as the role it will be evaluated as, as
	 * _select_as() will: checks privileges and what only shows at run time.
	 */
	restrict_to(role, &save_userid, &save_sec, &nest);
	if (SPI_execute_plan(plan, NULL, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "cannot run the segment query");
	unrestrict(save_userid, save_sec, nest);

	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * Runs a segment's query.  What it raises is the segment's failure, which
 * the tick reports and gets over (the segment keeps its members) -- also
 * query_canceled and assert_failure, which PL/pgSQL's WHEN OTHERS does not
 * catch: a predicate's own function raising either would otherwise fail
 * every tick.  They come back as external_routine_exception.  A cancel or
 * statement timeout of the statement itself (raised where interrupts are
 * processed) stays a cancel.
 */
static int
run_user_query(SPIPlanPtr plan)
{
	MemoryContext cxt = CurrentMemoryContext;
	int			ret = 0;

	PG_TRY();
	{
		ret = SPI_execute_plan(plan, NULL, NULL, true, 0);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if ((edata->sqlerrcode != ERRCODE_QUERY_CANCELED && edata->sqlerrcode != ERRCODE_ASSERT_FAILURE) ||
			(edata->funcname != NULL && strcmp(edata->funcname, "ProcessInterrupts") == 0))
		{
			FreeErrorData(edata);
			PG_RE_THROW();
		}
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("the segment query raised %s: %s", unpack_sql_state(edata->sqlerrcode), edata->message)));
	}
	PG_END_TRY();
	return ret;
}

/*
 * automation._select_as(role name, query text, key anyelement)
 *
 * Runs query -- a segment's, returning the members' keys in its first
 * column -- as role and read-only, and returns the keys.
 */
Datum
automation_select_as(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *role;
	char	   *query;
	Oid			save_userid;
	int			save_sec;
	int			nest;
	int			ret;
	SPIPlanPtr	plan;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		elog(ERROR, "automation._select_as called with a NULL argument");
	role = NameStr(*PG_GETARG_NAME(0));
	query = text_to_cstring(PG_GETARG_TEXT_PP(1));

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	restrict_to(role, &save_userid, &save_sec, &nest);

	plan = SPI_prepare(query, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "cannot prepare the segment query: %s", SPI_result_code_string(SPI_result));
	if (list_length(SPI_plan_get_plan_sources(plan)) != 1)
		reject("is more than one expression", NULL);
	ret = run_user_query(plan);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "segment query failed: %s", SPI_result_code_string(ret));

	unrestrict(save_userid, save_sec, nest);

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Datum		values[1];
		bool		nulls[1];

		values[0] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &nulls[0]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}
