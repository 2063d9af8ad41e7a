/*-------------------------------------------------------------------------
 *
 * binding.c
 *	  Checks behind automation.bind_*() that need the server's type cache.
 *
 * The bind functions themselves are SQL (sql/install/10_binding.sql): they
 * look columns up in the catalogs and store the mapping.  What SQL cannot
 * answer well is whether a type can key a hash table -- varchar hashes
 * through text's operator class, a domain through its base type -- so that
 * question is put to the type cache here, the same way the executor and the
 * profile pass will ask it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

PG_FUNCTION_INFO_V1(automation_check_key_type);

/*
 * automation._check_key_type(relation text, column_name name, typ regtype)
 *
 * Raises an error unless values of the given type can be hashed and
 * compared for equality, which every customer, order, cart and product key
 * must allow: the engine keys its per-customer state by them.
 */
Datum
automation_check_key_type(PG_FUNCTION_ARGS)
{
	char	   *relation;
	Name		column;
	Oid			typid;
	TypeCacheEntry *tce;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		elog(ERROR, "automation._check_key_type called with a NULL argument");

	relation = text_to_cstring(PG_GETARG_TEXT_PP(0));
	column = PG_GETARG_NAME(1);
	typid = PG_GETARG_OID(2);

	tce = lookup_type_cache(getBaseType(typid),
							TYPECACHE_HASH_PROC | TYPECACHE_EQ_OPR);

	if (!OidIsValid(tce->hash_proc) || !OidIsValid(tce->eq_opr))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("column \"%s\" of relation %s cannot be used as a key",
						NameStr(*column), relation),
				 errdetail("Its type %s has no default hash operator class, and keys must be hashable.",
						   format_type_be(typid)),
				 errhint("Bind a column of a hashable type such as bigint, integer, uuid or text.")));

	/* (the engine looks keys up with "= ANY (keys)", which unpacks an array) */
	if (type_is_array(getBaseType(typid)))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" of relation %s cannot be used as a key",
						NameStr(*column), relation),
				 errdetail("Its type %s is an array; a key is one value.", format_type_be(typid)),
				 errhint("Bind a column of a hashable type such as bigint, integer, uuid or text.")));

	/*
	 * (a row is hashable, but the engine stores and returns a key as one
	 * column: a composite result would be unpacked into its fields)
	 */
	if (type_is_rowtype(getBaseType(typid)))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" of relation %s cannot be used as a key",
						NameStr(*column), relation),
				 errdetail("Its type %s is a composite type; a key is one value.", format_type_be(typid)),
				 errhint("Bind a view of %s that turns the key into one value, such as text.", relation)));

	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(automation_column_type);

/*
 * automation._column_type(rel regclass, col name) returns regtype: the type
 * of that column, NULL when the relation has no column of that name.  From
 * the catalog cache: the tick asks it every run, where a query of
 * pg_attribute would be planned anew in each new session.
 */
Datum
automation_column_type(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Name		column = PG_GETARG_NAME(1);
	AttrNumber	attnum = get_attnum(relid, NameStr(*column));

	if (attnum == InvalidAttrNumber)
		PG_RETURN_NULL();
	PG_RETURN_OID(get_atttype(relid, attnum));
}
