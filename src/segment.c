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
#include <signal.h>

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "nodes/parsenodes.h"
#include "optimizer/optimizer.h"
#include "parser/parser.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/plancache.h"
#include "utils/timeout.h"
#include "utils/tuplestore.h"

#include "automation.h"
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
 * The predicate inside a segment's query, which begins
 * "SELECT p.customer_key, (" and goes on "\n) FROM automation.customer_profile p"
 * (automation._segment_query): where it starts, in bytes, and its length.
 * The last such "\n) FROM" is the query's own: the predicate comes before.
 */
#define PREDICATE_START "SELECT p.customer_key, ("
#define PREDICATE_END "\n) FROM automation.customer_profile p"

static bool
find_predicate(const char *query, int *start, int *len)
{
	const char *end = NULL;
	const char *at = query;

	if (strncmp(query, PREDICATE_START, strlen(PREDICATE_START)) != 0)
		return false;
	while ((at = strstr(at, PREDICATE_END)) != NULL)
		end = at++;
	if (end == NULL || end - query < (long) strlen(PREDICATE_START))
		return false;
	*start = strlen(PREDICATE_START);
	*len = end - query - *start;
	return true;
}

/*
 * An error the parser raised at a position in a segment's query, raised
 * again at that position in the predicate the user wrote: the query around
 * it is ours, and a caret under its text (or under the statement that
 * called define_segment) points at nothing they wrote.  A syntax error past
 * the predicate's end -- it stopped short, or a parenthesis or quote in it
 * left the query's own closing parenthesis unmatched -- is said so.  An
 * error without a position is raised again as it was.
 */
static void
raise_at_predicate(const char *query, ErrorData *edata)
{
	int			pos = edata->cursorpos > 0 ? edata->cursorpos : edata->internalpos;
	int			start,
				len,
				chars_before,
				chars;
	char	   *predicate;

	if (pos <= 0 || !find_predicate(query, &start, &len))
		ReThrowError(edata);
	predicate = pnstrdup(query + start, len);
	chars_before = pg_mbstrlen_with_len(query, start);
	chars = pg_mbstrlen_with_len(predicate, len);
	if (pos > chars_before + chars && edata->sqlerrcode == ERRCODE_SYNTAX_ERROR)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("syntax error at the end of the segment predicate"),
				 errhint("Check that it is complete, and its parentheses and quotes; leave out comments."),
				 internalerrquery(predicate),
				 internalerrposition(chars + 1)));
	ereport(ERROR,
			(errcode(edata->sqlerrcode),
			 errmsg_internal("%s", edata->message),
			 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
			 edata->hint ? errhint("%s", edata->hint) : 0,
			 internalerrquery(predicate),
			 internalerrposition(pos > chars_before && pos <= chars_before + chars ? pos - chars_before : 0)));
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

	MemoryContext cxt = CurrentMemoryContext;
	List	   *volatile parsed = NIL;
	SPIPlanPtr volatile prepared = NULL;

	deconstruct_array(rels, OIDOID, sizeof(Oid), true, TYPALIGN_INT, &relids, &relnulls, &nrels);

	/*
	 * Not while a segment's query runs (it runs as a security-restricted
	 * operation): a function a predicate calls could otherwise define a
	 * segment, and have it checked -- run on one row -- as the role of the
	 * session that evaluates it, the tick's.
	 */
	if (InSecurityRestrictedOperation())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot define a segment within a security-restricted operation")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/*
	 * Everything below -- analysis too, which looks up the functions and
	 * schemas the predicate names -- as the role it will be evaluated as.
	 */
	restrict_to(role, &save_userid, &save_sec, &nest);
	PG_TRY();
	{
		parsed = raw_parser(query, RAW_PARSE_DEFAULT);
		if (list_length(parsed) == 1)
			prepared = SPI_prepare(query, 0, NULL);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		raise_at_predicate(query, edata);
		pg_unreachable();
	}
	PG_END_TRY();
	/* a second statement smuggled in is refused before anything is analysed */
	if (list_length(parsed) != 1)
		reject("is more than one expression", "Remove the semicolon: a predicate cannot run statements.");
	plan = prepared;
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
	if (SPI_execute_plan(plan, NULL, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "cannot run the segment query");
	unrestrict(save_userid, save_sec, nest);

	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * automation.segment_timeout: a timer of our own, registered the first time
 * a segment is evaluated in the backend.  When it fires it cancels the
 * query as a statement timeout does (the query sees a cancel wherever it
 * processes interrupts -- pg_sleep in a function the predicate calls, say);
 * run_user_query() tells that cancel from the others by the flag.
 */
static bool segment_timer_registered = false;
static TimeoutId segment_timer;
static volatile sig_atomic_t segment_timed_out = false;

static void
segment_timeout_handler(void)
{
	segment_timed_out = true;
	if (!proc_exit_inprogress)
	{
		InterruptPending = true;
		QueryCancelPending = true;
	}
	SetLatch(MyLatch);
}

static void
segment_timeout_error(int timeout_ms)
{
	ereport(ERROR,
			(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
			 errmsg("the segment query ran longer than automation.segment_timeout (%d ms)", timeout_ms),
			 errhint("Make the predicate cheaper, or raise automation.segment_timeout.")));
}

/*
 * Runs a segment's query.  What it raises is the segment's failure, which
 * the tick reports and gets over (the segment keeps its members) -- also
 * query_canceled and assert_failure, which PL/pgSQL's WHEN OTHERS does not
 * catch: a predicate's own function raising either would otherwise fail
 * every tick.  They come back as external_routine_exception, as does a
 * query that runs longer than automation.segment_timeout: a predicate that
 * calls a function which never returns would otherwise hold the tick, and
 * every tick after it.  A cancel or statement timeout of the statement
 * itself (raised where interrupts are processed) stays a cancel.
 */
static int
run_user_query(SPIPlanPtr plan)
{
	MemoryContext cxt = CurrentMemoryContext;
	int			ret = 0;
	int			timeout_ms = automation_segment_timeout;

	if (timeout_ms > 0)
	{
		if (!segment_timer_registered)
		{
			segment_timer = RegisterTimeout(USER_TIMEOUT, segment_timeout_handler);
			segment_timer_registered = true;
		}
		segment_timed_out = false;
		enable_timeout_after(segment_timer, timeout_ms);
	}

	PG_TRY();
	{
		ret = SPI_execute_plan(plan, NULL, NULL, true, 0);
		CHECK_FOR_INTERRUPTS();
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		bool		timed_out;

		if (timeout_ms > 0)
			disable_timeout(segment_timer, false);
		timed_out = segment_timed_out;
		segment_timed_out = false;
		if (timed_out)
			QueryCancelPending = false; /* ours, if still pending */

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (timed_out && edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
		{
			FlushErrorState();
			segment_timeout_error(timeout_ms);
		}
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

	if (timeout_ms > 0)
	{
		disable_timeout(segment_timer, false);
		/* fired after the query's last look at the interrupts: still too long */
		if (segment_timed_out)
		{
			segment_timed_out = false;
			QueryCancelPending = false;
			segment_timeout_error(timeout_ms);
		}
	}
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
	/* a composite key would come back as its fields: bind refuses those */
	if (rsinfo->setDesc->natts != 1)
		elog(ERROR, "automation._select_as returns one column, not %d", rsinfo->setDesc->natts);

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
