/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The background workers that tick the engine by themselves.
 *
 * When the library is in shared_preload_libraries, a launcher starts one
 * worker per database listed in automation.database_name.  Each worker
 * runs automation.tick() every automation.naptime, in its own transaction,
 * and sleeps on its latch in between with no transaction or snapshot open.
 *
 * The launcher supervises through shared memory rather than through
 * postmaster restarts: every database has a slot that its worker fills with
 * its pid and clears when it exits, and the launcher starts a worker for
 * every slot that is empty.  So a worker stopped by pg_terminate_backend()
 * comes back within a second, a launcher stopped the same way is restarted
 * by the postmaster and adopts the workers still running, and after a crash
 * everything starts afresh with the shared memory.
 *
 * On a hot standby the workers connect but do not tick (they say so once);
 * after promotion the next loop ticks.  An error inside a tick is logged,
 * recorded in the slot (automation.worker_status) and the worker carries on.
 *
 * Between ticks a worker also keeps the hot outbox small.  Every message
 * passes through automation.outbox and leaves it, so the table's dead rows
 * outnumber its live ones by far, and autovacuum, which visits a database
 * only every autovacuum_naptime (a minute by default), lets it grow by all
 * that passed through meanwhile.  So once a second the worker reads from the
 * table's statistics how many rows left it since its last vacuum, and past
 * automation.outbox_vacuum_threshold it runs VACUUM on it, as a top-level
 * VACUUM command would: outside any transaction block, each table in a
 * transaction of its own (vacuum() starts and commits them).  It does not
 * vacuum again while the oldest snapshot that vacuum must respect is the
 * same as at its last vacuum: nothing new could be removed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "commands/vacuum.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_node.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "automation.h"
#include "worker.h"

/* settings */
char	   *automation_database_name = NULL;
char	   *automation_role = NULL;
int			automation_naptime = 60;
bool		automation_enabled = true;
int			automation_outbox_vacuum_threshold = 10000;

/* how often a worker looks whether the outbox needs a vacuum */
#define OUTBOX_CHECK_MS 1000

/*
 * What a worker knows about the outbox's vacuums.  "changed" counts the rows
 * that left the table or left a dead version with index entries: deletes,
 * and updates that were not HOT.  "baseline" is that count at the last
 * vacuum; "vacuums" the table's vacuum count (manual and autovacuum) the
 * worker last saw, so that another's vacuum moves the baseline too.
 */
typedef struct OutboxVacuumState
{
	bool		known;
	int64		baseline;
	int64		vacuums;
	TransactionId horizon;		/* the oldest snapshot at the last vacuum */
	TimestampTz last_check;
} OutboxVacuumState;

static OutboxVacuumState outbox_vacuum = {0};

/* what a worker is doing, as automation.worker_status shows it */
typedef enum WorkerState
{
	WS_STOPPED = 0,
	WS_STARTING,
	WS_IDLE,
	WS_TICKING,
	WS_DISABLED,
	WS_STANDBY,
	WS_NO_EXTENSION
} WorkerState;

/* this worker has logged that the extension is missing */
static bool reported_no_extension = false;

static const char *const worker_state_names[] = {
	"stopped", "starting", "idle", "ticking", "disabled", "standby", "no extension"
};

#define SLOT_TEXT 512

typedef struct WorkerSlot
{
	char		dbname[NAMEDATALEN];
	pid_t		pid;
	WorkerState state;
	bool		registering;	/* launcher registered a worker not yet up */
	TimestampTz registered_at;
	bool		reported_missing;	/* launcher logged a missing database */
	int64		ticks;
	TimestampTz last_tick_start;
	double		last_tick_ms;
	char		last_rows[SLOT_TEXT];
	TimestampTz last_error_at;
	char		last_error[SLOT_TEXT];
	TimestampTz next_due;		/* when the next queued message matures, or 0 */
} WorkerSlot;

typedef struct WorkerShared
{
	slock_t		mutex;
	pid_t		launcher_pid;
	int			nslots;
	WorkerSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} WorkerShared;

static WorkerShared *shared = NULL;
static int	configured_slots = 0;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/*
 * Splits automation.database_name into its names.  The list is fixed at
 * server start (the setting is postmaster-only), so the slots are too.
 */
static List *
database_names(void)
{
	char	   *raw;
	List	   *names = NIL;

	if (automation_database_name == NULL)
		return NIL;
	raw = pstrdup(automation_database_name);
	if (!SplitGUCList(raw, ',', &names))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid list syntax in automation.database_name")));
	return names;
}

static Size
worker_shmem_size(void)
{
	return add_size(offsetof(WorkerShared, slots),
					mul_size(configured_slots, sizeof(WorkerSlot)));
}

static void
worker_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(worker_shmem_size());
}

static void
worker_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("automation workers", worker_shmem_size(), &found);
	if (!found)
	{
		List	   *names = database_names();
		ListCell   *lc;
		int			i = 0;

		memset(shared, 0, worker_shmem_size());
		SpinLockInit(&shared->mutex);
		foreach(lc, names)
		{
			if (i >= configured_slots)
				break;
			strlcpy(shared->slots[i].dbname, (char *) lfirst(lc), NAMEDATALEN);
			i++;
		}
		shared->nslots = i;
	}
	LWLockRelease(AddinShmemInitLock);
}

static bool
check_database_name(char **newval, void **extra, GucSource source)
{
	char	   *raw;
	List	   *names;
	ListCell   *lc;

	if (*newval == NULL)
		return true;
	raw = pstrdup(*newval);
	if (!SplitGUCList(raw, ',', &names))
	{
		GUC_check_errdetail("List syntax is invalid.");
		return false;
	}
	foreach(lc, names)
	{
		if (strlen((char *) lfirst(lc)) >= NAMEDATALEN)
		{
			GUC_check_errdetail("Database name \"%s\" is too long.", (char *) lfirst(lc));
			return false;
		}
	}
	return true;
}

/*
 * Defines the worker's settings and registers the launcher.  Called from
 * _PG_init: the reloadable settings always, the rest only when the library
 * is being preloaded.
 */
void
worker_init(void)
{
	BackgroundWorker bgw;

	DefineCustomIntVariable("automation.naptime",
							"Time between two ticks of the background worker.",
							NULL,
							&automation_naptime,
							60, 1, 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("automation.enabled",
							 "Whether the background workers tick.",
							 "When off, the workers stay connected but do nothing; "
							 "automation.tick() still works when called.",
							 &automation_enabled,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("automation.outbox_vacuum_threshold",
							"Rows leaving automation.outbox after which the background worker vacuums it.",
							"The worker looks every second; 0 leaves the table to autovacuum alone.",
							&automation_outbox_vacuum_threshold,
							10000, 0, INT_MAX,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomStringVariable("automation.database_name",
							   "Databases the background workers tick, separated by commas.",
							   "One worker per database; a database without the extension "
							   "is logged once and left alone.",
							   &automation_database_name,
							   "postgres",
							   PGC_POSTMASTER,
							   GUC_LIST_INPUT,
							   check_database_name, NULL, NULL);

	DefineCustomStringVariable("automation.role",
							   "Role the background workers tick as.",
							   "Empty means the role that owns the extension in each database.",
							   &automation_role,
							   "",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);

	configured_slots = list_length(database_names());
	if (configured_slots == 0)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = worker_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = worker_shmem_startup;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_ConsistentState;
	bgw.bgw_restart_time = 1;
	strlcpy(bgw.bgw_library_name, "automation", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "automation_launcher_main", BGW_MAXLEN);
	strlcpy(bgw.bgw_name, "automation launcher", BGW_MAXLEN);
	strlcpy(bgw.bgw_type, "automation launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&bgw);
}

/* Is the process with this pid still there? */
static bool
pid_alive(pid_t pid)
{
	return pid != 0 && (kill(pid, 0) == 0 || errno != ESRCH);
}

/*
 * Does a database of this name exist?  Scans pg_database without its
 * indexes, as the autovacuum launcher does: a process bound to no database
 * cannot build index descriptors before the shared relcache init file
 * exists, which on a fresh standby it does not.
 */
static bool
database_exists(const char *dbname)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	bool		found = false;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (!found && HeapTupleIsValid(tuple = heap_getnext(scan, ForwardScanDirection)))
		found = strcmp(NameStr(((Form_pg_database) GETSTRUCT(tuple))->datname), dbname) == 0;
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return found;
}

/*
 * Registers a worker for slot i.  Returns false when the postmaster has no
 * room for another background worker (max_worker_processes).
 */
static bool
start_worker(int i)
{
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_ConsistentState;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(bgw.bgw_library_name, "automation", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "automation_worker_main", BGW_MAXLEN);
	snprintf(bgw.bgw_name, BGW_MAXLEN, "automation worker for database %s", shared->slots[i].dbname);
	strlcpy(bgw.bgw_type, "automation worker", BGW_MAXLEN);
	bgw.bgw_main_arg = Int32GetDatum(i);
	bgw.bgw_notify_pid = MyProcPid;

	return RegisterDynamicBackgroundWorker(&bgw, &handle);
}

/*
 * The launcher: keeps one worker running for every listed database that
 * exists.  It connects to no database; it only reads pg_database.
 */
void
automation_launcher_main(Datum main_arg)
{
	bool		warned_full = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("automation launcher");

	SpinLockAcquire(&shared->mutex);
	shared->launcher_pid = MyProcPid;
	SpinLockRelease(&shared->mutex);

	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		int			i;

		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			break;
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		for (i = 0; i < shared->nslots; i++)
		{
			WorkerSlot *slot = &shared->slots[i];
			pid_t		pid;
			bool		registering;

			SpinLockAcquire(&shared->mutex);
			pid = slot->pid;
			registering = slot->registering &&
				!TimestampDifferenceExceeds(slot->registered_at, now, 10000);
			SpinLockRelease(&shared->mutex);
			if (registering || pid_alive(pid))
				continue;

			if (!database_exists(slot->dbname))
			{
				if (!slot->reported_missing)
					ereport(LOG,
							(errmsg("database \"%s\" listed in automation.database_name does not exist",
									slot->dbname),
							 errhint("Create it, or remove it from automation.database_name and restart the server.")));
				slot->reported_missing = true;
				continue;
			}

			if (start_worker(i))
			{
				SpinLockAcquire(&shared->mutex);
				slot->registering = true;
				slot->registered_at = now;
				slot->state = WS_STARTING;
				SpinLockRelease(&shared->mutex);
				warned_full = false;
			}
			else if (!warned_full)
			{
				ereport(WARNING,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("could not start an automation worker for database \"%s\"", slot->dbname),
						 errhint("Raise max_worker_processes.")));
				warned_full = true;
			}
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}

	/*
	 * Exit with 1 so that the postmaster starts the launcher again: a
	 * launcher stopped by pg_terminate_backend() must come back.  At server
	 * shutdown the postmaster restarts nothing anyway.
	 */
	proc_exit(1);
}

static void
slot_set_state(WorkerSlot *slot, WorkerState state)
{
	SpinLockAcquire(&shared->mutex);
	slot->state = state;
	SpinLockRelease(&shared->mutex);
}

/* Frees the slot when the worker exits, so that the launcher starts another. */
static void
worker_detach(int code, Datum arg)
{
	WorkerSlot *slot = &shared->slots[DatumGetInt32(arg)];

	SpinLockAcquire(&shared->mutex);
	if (slot->pid == MyProcPid)
	{
		slot->pid = 0;
		slot->state = WS_STOPPED;
	}
	SpinLockRelease(&shared->mutex);
}

/*
 * The role a tick runs as: automation.role when set, else the owner of the
 * extension in this database.  InvalidOid when the extension is missing.
 */
static pg_noinline Oid
tick_role(void)
{
	Oid			extoid = get_extension_oid("automation", true);
	HeapTuple	tuple;
	Oid			owner;

	if (!OidIsValid(extoid))
		return InvalidOid;
	if (automation_role != NULL && automation_role[0] != '\0')
		return GetUserId();

	tuple = SearchSysCache1(EXTENSIONOID, ObjectIdGetDatum(extoid));
	if (!HeapTupleIsValid(tuple))
		return InvalidOid;
	owner = ((Form_pg_extension) GETSTRUCT(tuple))->extowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * Logs a failure of one of the worker's jobs ("what") and records its
 * message in the slot for automation.worker_status; frees edata.
 */
static void
record_failure(WorkerSlot *slot, const char *what, ErrorData *edata)
{
	ereport(LOG,
			(errmsg("automation %s in database \"%s\" failed: %s", what, slot->dbname, edata->message),
			 edata->detail ? errdetail_internal("%s", edata->detail) : 0));

	SpinLockAcquire(&shared->mutex);
	slot->last_error_at = GetCurrentTimestamp();
	strlcpy(slot->last_error, edata->message, SLOT_TEXT);
	SpinLockRelease(&shared->mutex);
	FreeErrorData(edata);
}

/*
 * Runs one query in its own transaction, as the tick's role, and writes its
 * result rows to "out" as "first=second" pairs (or first values alone),
 * separated by spaces.  An error is caught, logged and recorded in the
 * slot; the transaction is rolled back and false returned, and the worker
 * goes on.  Returns false too when the extension is missing (said once).
 */
static bool
run_query(WorkerSlot *slot, MemoryContext loop_cxt, const char *what, const char *query, StringInfo out)
{
	Oid			save_userid;
	int			save_sec_context;
	Oid			role;
	volatile bool ok = true;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());

	role = tick_role();
	if (!OidIsValid(role))
	{
		if (!reported_no_extension)
			ereport(LOG,
					(errmsg("automation worker: extension \"automation\" is not installed in database \"%s\"",
							slot->dbname),
					 errhint("Run CREATE EXTENSION automation in it, or remove it from automation.database_name.")));
		reported_no_extension = true;
		slot_set_state(slot, WS_NO_EXTENSION);
		PopActiveSnapshot();
		CommitTransactionCommand();
		return false;
	}
	reported_no_extension = false;

	PG_TRY();
	{
		uint64		n;

		GetUserIdAndSecContext(&save_userid, &save_sec_context);
		SetUserIdAndSecContext(role, save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
		if (StatementTimeout > 0)
			enable_timeout_after(STATEMENT_TIMEOUT, StatementTimeout);

		pgstat_report_activity(STATE_RUNNING, query);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (SPI_execute(query, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "%s did not return rows", what);

		for (n = 0; n < SPI_processed; n++)
		{
			TupleDesc	desc = SPI_tuptable->tupdesc;
			char	   *first = SPI_getvalue(SPI_tuptable->vals[n], desc, 1);
			char	   *second = desc->natts > 1 ? SPI_getvalue(SPI_tuptable->vals[n], desc, 2) : NULL;

			MemoryContext old = MemoryContextSwitchTo(loop_cxt);

			appendStringInfo(out, "%s%s", n > 0 ? " " : "", first ? first : "");
			if (desc->natts > 1)
				appendStringInfo(out, "=%s", second ? second : "");
			MemoryContextSwitchTo(old);
		}
		SPI_finish();

		if (StatementTimeout > 0)
			disable_timeout(STATEMENT_TIMEOUT, false);
		SetUserIdAndSecContext(save_userid, save_sec_context);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(loop_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		if (StatementTimeout > 0)
			disable_timeout(STATEMENT_TIMEOUT, false);
		AbortCurrentTransaction();
		record_failure(slot, what, edata);
		ok = false;
	}
	PG_END_TRY();

	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return ok;
}

/* One tick, recorded in the slot. */
static void
tick_once(WorkerSlot *slot, MemoryContext loop_cxt)
{
	TimestampTz start = GetCurrentTimestamp();
	StringInfoData rows;
	bool		ok;

	initStringInfo(&rows);
	slot_set_state(slot, WS_TICKING);
	ok = run_query(slot, loop_cxt, "tick", "SELECT stage, rows FROM automation.tick()", &rows);

	SpinLockAcquire(&shared->mutex);
	if (slot->state == WS_TICKING)
	{
		slot->ticks++;
		slot->last_tick_start = start;
		slot->last_tick_ms = (double) (GetCurrentTimestamp() - start) / 1000.0;
		if (ok)
			strlcpy(slot->last_rows, rows.data, SLOT_TEXT);
		slot->state = WS_IDLE;
	}
	SpinLockRelease(&shared->mutex);
}

/*
 * Wakes the mailers for messages that became due since the last look, and
 * notes in the slot when the next queued message or lease matures (0 when
 * none is waiting).
 */
static void
wake_mailers(WorkerSlot *slot, MemoryContext loop_cxt)
{
	StringInfoData ms;
	TimestampTz found = 0;
	TimestampTz now;

	initStringInfo(&ms);
	if (run_query(slot, loop_cxt, "wake-up of mailers", "SELECT automation._wake_mailers()", &ms) &&
		ms.data[0] != '\0')
		found = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), Max(strtol(ms.data, NULL, 10), 1));

	/*
	 * Keep a time poked in while the query ran (automation._poke_worker):
	 * the query may not have seen that message committed yet.
	 */
	now = GetCurrentTimestamp();
	SpinLockAcquire(&shared->mutex);
	if (!(slot->next_due > now && (found == 0 || slot->next_due < found)))
		slot->next_due = found;
	SpinLockRelease(&shared->mutex);
}

/*
 * Has enough left the outbox since its last vacuum for another to be worth
 * it?  Returns the table's oid and owner when so, InvalidOid when not (or
 * when the extension is missing).  Reads the cumulative statistics, which
 * backends report at most once a second: cheap enough to ask every second.
 */
static Oid
outbox_needs_vacuum(Oid *owner)
{
	Oid			relid;
	Oid			nsp;
	PgStat_StatTabEntry *tab;
	int64		changed = 0;
	int64		vacuums = 0;
	Relation	rel;
	TransactionId horizon;

	StartTransactionCommand();
	nsp = get_namespace_oid("automation", true);
	relid = OidIsValid(nsp) ? get_relname_relid("outbox", nsp) : InvalidOid;
	if (!OidIsValid(relid))
	{
		CommitTransactionCommand();
		outbox_vacuum.known = false;
		return InvalidOid;
	}

	tab = pgstat_fetch_stat_tabentry(relid);
	if (tab != NULL)
	{
		changed = tab->tuples_deleted + tab->tuples_updated - tab->tuples_hot_updated;
		vacuums = tab->vacuum_count + tab->autovac_vacuum_count;
	}

	/*
	 * Someone else vacuumed it (or the statistics were reset): count from
	 * here.
	 */
	if (!outbox_vacuum.known || vacuums != outbox_vacuum.vacuums || changed < outbox_vacuum.baseline)
	{
		outbox_vacuum.known = true;
		outbox_vacuum.baseline = changed;
		outbox_vacuum.vacuums = vacuums;
		outbox_vacuum.horizon = InvalidTransactionId;
	}
	if (changed - outbox_vacuum.baseline < automation_outbox_vacuum_threshold)
	{
		CommitTransactionCommand();
		return InvalidOid;
	}

	/*
	 * While a transaction holds back the horizon vacuum must respect (a
	 * long REPEATABLE READ report, a session idle in transaction), a vacuum
	 * removes nothing the last one left: wait until it moves.
	 */
	rel = try_relation_open(relid, AccessShareLock);
	if (rel == NULL)
	{
		CommitTransactionCommand();
		return InvalidOid;
	}
	horizon = GetOldestNonRemovableTransactionId(rel);
	*owner = rel->rd_rel->relowner;
	relation_close(rel, AccessShareLock);
	CommitTransactionCommand();

	if (TransactionIdIsValid(outbox_vacuum.horizon) &&
		TransactionIdEquals(horizon, outbox_vacuum.horizon))
		return InvalidOid;

	outbox_vacuum.baseline = changed;
	outbox_vacuum.horizon = horizon;
	return relid;
}

/*
 * VACUUM automation.outbox (and so its indexes), as its owner, the way a
 * top-level VACUUM command runs: vacuum() commits the transaction it is
 * called in, vacuums the table in a transaction of its own, and starts a
 * new one for its caller to commit.  SKIP_LOCKED: when autovacuum is at the
 * table already, there is nothing to add.  An error is logged and recorded
 * like a failed tick's, and the worker goes on.
 */
static void
vacuum_outbox(WorkerSlot *slot, MemoryContext loop_cxt, Oid relid, Oid owner)
{
	MemoryContext vacuum_cxt;
	MemoryContext save_portal_cxt = PortalContext;
	Oid			save_userid;
	int			save_sec_context;
	int64		vacuums_before = outbox_vacuum.vacuums;

	/* vacuum() keeps what must outlive its transactions under PortalContext */
	vacuum_cxt = AllocSetContextCreate(loop_cxt, "automation outbox vacuum", ALLOCSET_DEFAULT_SIZES);
	PortalContext = vacuum_cxt;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, "VACUUM automation.outbox");
	GetUserIdAndSecContext(&save_userid, &save_sec_context);

	PG_TRY();
	{
		VacuumStmt *stmt;
		MemoryContext old = MemoryContextSwitchTo(vacuum_cxt);

		/*
		 * The statement must outlive the transactions vacuum() commits, as a
		 * query's parse tree does.  No RangeVar: with an oid given vacuum()
		 * looks nothing up, and says nothing when it skips a table locked by
		 * autovacuum.
		 */
		stmt = makeNode(VacuumStmt);
		stmt->options = list_make1(makeDefElem("skip_locked", NULL, -1));
		stmt->rels = list_make1(makeVacuumRelation(NULL, relid, NIL));
		stmt->is_vacuumcmd = true;
		MemoryContextSwitchTo(old);

		SetUserIdAndSecContext(owner, save_sec_context);
		ExecVacuum(make_parsestate(NULL), stmt, true);
		SetUserIdAndSecContext(save_userid, save_sec_context);
		CommitTransactionCommand();

		/* our own vacuum does not move the baseline again */
		outbox_vacuum.vacuums = vacuums_before + 1;
		ereport(DEBUG1,
				(errmsg("automation worker vacuumed automation.outbox in database \"%s\"", slot->dbname)));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(loop_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		SetUserIdAndSecContext(save_userid, save_sec_context);
		record_failure(slot, "vacuum of automation.outbox", edata);
		outbox_vacuum.known = false;
	}
	PG_END_TRY();

	PortalContext = save_portal_cxt;
	MemoryContextSwitchTo(loop_cxt);
	MemoryContextDelete(vacuum_cxt);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Once a second: vacuums the outbox when enough rows have left it. */
static void
keep_outbox_small(WorkerSlot *slot, MemoryContext loop_cxt)
{
	TimestampTz now = GetCurrentTimestamp();
	Oid			relid;
	Oid			owner = InvalidOid;

	if (automation_outbox_vacuum_threshold <= 0 ||
		!TimestampDifferenceExceeds(outbox_vacuum.last_check, now, OUTBOX_CHECK_MS - 10))
		return;
	outbox_vacuum.last_check = now;

	relid = outbox_needs_vacuum(&owner);
	if (OidIsValid(relid))
		vacuum_outbox(slot, loop_cxt, relid, owner);
}

/*
 * A worker: ticks its database every automation.naptime until stopped,
 * and in between wakes the mailers when a queued message becomes due.
 */
void
automation_worker_main(Datum main_arg)
{
	int			i = DatumGetInt32(main_arg);
	WorkerSlot *slot = &shared->slots[i];
	MemoryContext loop_cxt;
	bool		said_standby = false;
	TimestampTz last_tick = 0;
	TimestampTz next_due;
	pid_t		other;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	/* Only one worker per database, even if a launcher lost count. */
	SpinLockAcquire(&shared->mutex);
	other = slot->pid;
	SpinLockRelease(&shared->mutex);
	if (other != 0 && other != MyProcPid && pid_alive(other))
		proc_exit(0);
	SpinLockAcquire(&shared->mutex);
	slot->pid = MyProcPid;
	slot->registering = false;
	slot->state = WS_STARTING;
	SpinLockRelease(&shared->mutex);
	before_shmem_exit(worker_detach, Int32GetDatum(i));

	BackgroundWorkerInitializeConnection(slot->dbname,
										 (automation_role && automation_role[0]) ? automation_role : NULL,
										 0);
	pgstat_report_appname("automation worker");

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "automation worker loop",
									 ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		TimestampTz now;
		TimestampTz next_tick;
		long		delay_ms;

		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			break;
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);
		SpinLockAcquire(&shared->mutex);
		next_due = slot->next_due;
		SpinLockRelease(&shared->mutex);

		/* A new naptime takes effect at once: the next tick is due naptime after the last. */
		now = GetCurrentTimestamp();
		next_tick = TimestampTzPlusMilliseconds(last_tick, (int64) automation_naptime * 1000);
		if (!automation_enabled)
			slot_set_state(slot, WS_DISABLED);
		else if (RecoveryInProgress())
		{
			if (!said_standby)
				ereport(LOG,
						(errmsg("automation worker for database \"%s\" waits: the server is a standby",
								slot->dbname),
						 errdetail("It ticks once the server is promoted.")));
			said_standby = true;
			slot_set_state(slot, WS_STANDBY);
		}
		else if (last_tick == 0 || now >= next_tick)
		{
			last_tick = now;
			tick_once(slot, loop_cxt);
			wake_mailers(slot, loop_cxt);
			now = GetCurrentTimestamp();
			next_tick = TimestampTzPlusMilliseconds(last_tick, (int64) automation_naptime * 1000);
		}
		else if (next_due != 0 && now >= next_due)
		{
			/* a queued message matured between ticks: wake the mailers now */
			wake_mailers(slot, loop_cxt);
			now = GetCurrentTimestamp();
		}
		if (automation_enabled && !RecoveryInProgress())
		{
			keep_outbox_small(slot, loop_cxt);
			now = GetCurrentTimestamp();
		}
		SpinLockAcquire(&shared->mutex);
		next_due = slot->next_due;
		SpinLockRelease(&shared->mutex);

		/*
		 * Sleep until the next tick or the next message due, whichever is
		 * first; on a standby or when disabled, look again every second.
		 */
		if (next_due != 0 && next_due < next_tick && automation_enabled && !RecoveryInProgress())
			delay_ms = (long) ((next_due - now) / 1000);
		else
			delay_ms = (long) ((next_tick - now) / 1000);
		if (RecoveryInProgress() || !automation_enabled)
			delay_ms = Min(delay_ms, 1000L);
		else if (automation_outbox_vacuum_threshold > 0)
			delay_ms = Min(delay_ms, (long) OUTBOX_CHECK_MS);
		if (delay_ms < 1)
			delay_ms = 1;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 delay_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}

	/* Exit with 1: see the launcher.  The launcher starts a new worker. */
	proc_exit(1);
}

PG_FUNCTION_INFO_V1(automation_worker_status);

/*
 * automation._worker_status(): one row per database the workers tick.  No
 * rows when the library was not preloaded.
 */
Datum
automation_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (shared == NULL)
		return (Datum) 0;

	for (i = 0; i < shared->nslots; i++)
	{
		WorkerSlot	copy;
		Datum		values[9];
		bool		nulls[9];

		SpinLockAcquire(&shared->mutex);
		memcpy(&copy, &shared->slots[i], sizeof(WorkerSlot));
		SpinLockRelease(&shared->mutex);

		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(copy.dbname);
		values[1] = Int32GetDatum((int32) copy.pid);
		nulls[1] = copy.pid == 0;
		values[2] = CStringGetTextDatum(worker_state_names[copy.state]);
		values[3] = Int64GetDatum(copy.ticks);
		values[4] = TimestampTzGetDatum(copy.last_tick_start);
		nulls[4] = copy.last_tick_start == 0;
		values[5] = Float8GetDatum(copy.last_tick_ms);
		nulls[5] = copy.last_tick_start == 0;
		values[6] = CStringGetTextDatum(copy.last_rows);
		nulls[6] = copy.last_rows[0] == '\0';
		values[7] = CStringGetTextDatum(copy.last_error);
		nulls[7] = copy.last_error[0] == '\0';
		values[8] = TimestampTzGetDatum(copy.last_error_at);
		nulls[8] = copy.last_error_at == 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(automation_poke_worker);

/*
 * automation._poke_worker(due timestamptz): tells this database's worker
 * that a message will mature at "due", if that is earlier than what it
 * waits for, and wakes it to sleep anew.  Called by a trigger on the outbox
 * for messages queued for later and for leases.  Does nothing without the
 * workers.
 */
Datum
automation_poke_worker(PG_FUNCTION_ARGS)
{
	TimestampTz due;
	char	   *dbname;
	pid_t		pid = 0;
	int			i;

	if (shared == NULL || PG_ARGISNULL(0))
		PG_RETURN_VOID();
	due = PG_GETARG_TIMESTAMPTZ(0);
	dbname = get_database_name(MyDatabaseId);
	if (dbname == NULL)
		PG_RETURN_VOID();

	SpinLockAcquire(&shared->mutex);
	for (i = 0; i < shared->nslots; i++)
	{
		WorkerSlot *slot = &shared->slots[i];

		if (strcmp(slot->dbname, dbname) != 0)
			continue;
		if (slot->next_due == 0 || due < slot->next_due)
		{
			slot->next_due = due;
			pid = slot->pid;
		}
		break;
	}
	SpinLockRelease(&shared->mutex);

	/* SIGUSR1 sets the worker's latch */
	if (pid != 0)
		(void) kill(pid, SIGUSR1);
	PG_RETURN_VOID();
}
