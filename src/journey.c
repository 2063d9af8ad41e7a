/*-------------------------------------------------------------------------
 *
 * journey.c
 *	  The parts of the journeys that SQL cannot do well: putting a
 *	  message's payload together, a cart's lines as JSON, and the triggers'
 *	  contexts.
 *
 * The steps stage (sql/install/62_journey_tick.sql) is set-based SQL.  A
 * message's payload, though, is the merge of up to six parts: the step's
 * payload, the chosen variant's, the enrollment's, the fields every message
 * has (first name, journey, step, variant, customer key), the extras the
 * step includes, and the cart with its lines.  Merged with jsonb's || and
 * built with jsonb_build_object, each part is serialized again at every
 * merge and every level it is nested in, the cart's lines four times.  A
 * tick that writes 70,000 cart reminders spent half a second there.  Here
 * every part is read once and the payload serialized once.
 *
 * The cart's lines, read once per tick for all the carts named, are one
 * JSON object per line gathered into an array per cart.  With
 * jsonb_build_object and jsonb_agg each line was serialized three times
 * and read back twice (jsonb_agg serializes each element it is given once
 * more before it takes it apart); automation._cart_lines builds each line
 * in place, and serializes each cart's array once.
 *
 * Each enrollment's context, the few facts its trigger found (a cart's id,
 * total and checkout stage), is a small object built once per subject the
 * trigger finds: automation._object builds it as jsonb_build_object would,
 * for a fraction of the cost.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"

#include "journey.h"

PG_FUNCTION_INFO_V1(automation_message_payload);
PG_FUNCTION_INFO_V1(automation_cart_lines_add);
PG_FUNCTION_INFO_V1(automation_cart_lines_final);
PG_FUNCTION_INFO_V1(automation_object);

/* The members of a cart line, in the order automation._cart_lines takes them. */
#define LINE_MEMBERS 5
static const char *const line_keys[LINE_MEMBERS] = {"product", "quantity", "name", "price", "only_left"};

/* How a column's values become JSON values, as to_jsonb makes them. */
typedef enum ValueKind
{
	VALUE_BOOL,
	VALUE_INTEGER,				/* int2, int4, int8: a number */
	VALUE_NUMERIC,				/* numeric: a number, NaN and infinities a string */
	VALUE_FLOAT,				/* float4, float8: a number, NaN and infinities a string */
	VALUE_DATETIME,				/* date, timestamp, timestamptz: ISO 8601 */
	VALUE_JSON,					/* json, jsonb: the value itself */
	VALUE_TEXT					/* anything else: its text */
} ValueKind;

/* How one argument becomes a JSON value, worked out once per query. */
typedef struct ValueColumn
{
	Oid			type;			/* a domain's base type */
	ValueKind	kind;
	FmgrInfo	output;
} ValueColumn;

/* Pushes a key, given as a C string, of the object being built. */
static void
push_key(JsonbParseState **state, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.len = strlen(key);
	k.val.string.val = (char *) key;
	pushJsonbValue(state, WJB_KEY, &k);
}

/*
 * Pushes a key and its value: a scalar, or a container that pushJsonbValue
 * unpacks; JSON null when value is NULL.
 */
static void
push_value(JsonbParseState **state, const char *key, JsonbValue *value)
{
	JsonbValue	null;

	push_key(state, key);
	if (value == NULL)
	{
		null.type = jbvNull;
		value = &null;
	}
	pushJsonbValue(state, WJB_VALUE, value);
}

/* Pushes a key and a text value (JSON null when NULL). */
static void
push_text(JsonbParseState **state, const char *key, text *value)
{
	JsonbValue	v;

	if (value != NULL)
	{
		v.type = jbvString;
		v.val.string.len = VARSIZE_ANY_EXHDR(value);
		v.val.string.val = VARDATA_ANY(value);
	}
	push_value(state, key, value == NULL ? NULL : &v);
}

/*
 * Pushes every key and value of a jsonb object; a later value of a key
 * replaces an earlier one when the object is closed, as with ||.  NULL
 * pushes nothing.
 */
static void
push_members(JsonbParseState **state, JsonbContainer *object, const char *what)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken token;

	if (object == NULL)
		return;
	if (!JsonContainerIsObject(object))
		elog(ERROR, "the %s of a message's payload is not a JSON object", what);
	it = JsonbIteratorInit(object);
	while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (token == WJB_KEY || token == WJB_VALUE)
			pushJsonbValue(state, token, &v);
	}
}

/* The root of a jsonb argument, or NULL. */
#define ARG_CONTAINER(n) (PG_ARGISNULL(n) ? NULL : &PG_GETARG_JSONB_P(n)->root)

/* The value of a key of a jsonb object, or NULL. */
static JsonbValue *
find_key(Jsonb *object, const char *key)
{
	if (object == NULL || !JB_ROOT_IS_OBJECT(object))
		return NULL;
	return getKeyJsonValueFromContainer(&object->root, key, strlen(key), NULL);
}

/* A JSON value as text, as ->> gives it; NULL for null. */
static text *
scalar_text(JsonbValue *v)
{
	if (v == NULL)
		return NULL;
	switch (v->type)
	{
		case jbvString:
			return cstring_to_text_with_len(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return cstring_to_text(DatumGetCString(DirectFunctionCall1(numeric_out,
																	   NumericGetDatum(v->val.numeric))));
		case jbvBool:
			return cstring_to_text(v->val.boolean ? "true" : "false");
		case jbvBinary:
			return cstring_to_text(JsonbToCString(NULL, v->val.binary.data, v->val.binary.len));
		default:
			return NULL;
	}
}

/*
 * automation._message_payload(payload jsonb, variant_payload jsonb,
 *		context jsonb, first_name text, journey text, step integer,
 *		variant text, customer_key text, extra jsonb, with_cart boolean,
 *		cart_url text, cart_lines jsonb) RETURNS jsonb
 *
 * A message's payload: the members of the step's payload, then of the
 * chosen variant's, then of the enrollment context's "payload", then
 * first_name, journey, step, variant and customer_key, then the members of
 * extra -- a later key replacing an earlier one, as a || b || ... does --
 * and, with_cart, "cart": the context's cart_id, cart_total (as "total")
 * and stage, the url (cart_url with {cart_id} replaced by the cart's id)
 * and the lines (an empty array when NULL).
 */
Datum
automation_message_payload(PG_FUNCTION_ARGS)
{
	Jsonb	   *context = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	JsonbParseState *state = NULL;
	JsonbValue *own;
	JsonbValue *result;
	JsonbValue	v;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	push_members(&state, ARG_CONTAINER(0), "step's part");
	push_members(&state, ARG_CONTAINER(1), "variant's part");
	own = find_key(context, "payload");
	if (own != NULL && own->type != jbvNull)
	{
		if (own->type != jbvBinary)
			elog(ERROR, "the enrollment's part of a message's payload is not a JSON object");
		push_members(&state, own->val.binary.data, "enrollment's part");
	}
	push_text(&state, "first_name", PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3));
	push_text(&state, "journey", PG_ARGISNULL(4) ? NULL : PG_GETARG_TEXT_PP(4));
	if (!PG_ARGISNULL(5))
	{
		v.type = jbvNumeric;
		v.val.numeric = int64_to_numeric(PG_GETARG_INT32(5));
	}
	push_value(&state, "step", PG_ARGISNULL(5) ? NULL : &v);
	push_text(&state, "variant", PG_ARGISNULL(6) ? NULL : PG_GETARG_TEXT_PP(6));
	push_text(&state, "customer_key", PG_ARGISNULL(7) ? NULL : PG_GETARG_TEXT_PP(7));
	push_members(&state, ARG_CONTAINER(8), "extras' part");
	if (!PG_ARGISNULL(9) && PG_GETARG_BOOL(9))
	{
		JsonbValue *cart_id = find_key(context, "cart_id");
		text	   *id_text = scalar_text(cart_id);

		push_key(&state, "cart");
		pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
		push_value(&state, "cart_id", cart_id);
		push_value(&state, "total", find_key(context, "cart_total"));
		push_value(&state, "stage", find_key(context, "stage"));
		push_text(&state, "url",
				  PG_ARGISNULL(10) || id_text == NULL ? NULL :
				  DatumGetTextPP(DirectFunctionCall3Coll(replace_text, DEFAULT_COLLATION_OID, PG_GETARG_DATUM(10),
													 CStringGetTextDatum("{cart_id}"),
													 PointerGetDatum(id_text))));
		push_key(&state, "lines");
		if (PG_ARGISNULL(11))
		{
			pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
			pushJsonbValue(&state, WJB_END_ARRAY, NULL);
		}
		else
		{
			Jsonb	   *lines = PG_GETARG_JSONB_P(11);

			v.type = jbvBinary;
			v.val.binary.data = &lines->root;
			v.val.binary.len = VARSIZE(lines) - VARHDRSZ;
			pushJsonbValue(&state, WJB_VALUE, &v);
		}
		pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	}
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	PG_RETURN_JSONB_P(JsonbValueToJsonb(result));
}

/* The kind of a (base) type. */
static ValueKind
value_kind(Oid type)
{
	switch (type)
	{
		case BOOLOID:
			return VALUE_BOOL;
		case INT2OID:
		case INT4OID:
		case INT8OID:
			return VALUE_INTEGER;
		case NUMERICOID:
			return VALUE_NUMERIC;
		case FLOAT4OID:
		case FLOAT8OID:
			return VALUE_FLOAT;
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return VALUE_DATETIME;
		case JSONOID:
		case JSONBOID:
			return VALUE_JSON;
		default:
			return VALUE_TEXT;
	}
}

/*
 * Describes argument argno (from 0) of the function being called, for
 * push_datum, in fn_mcxt; what names the function in the error for an
 * argument whose type cannot be told.
 */
static void
describe_argument(FunctionCallInfo fcinfo, int argno, ValueColumn *col, const char *what)
{
	Oid			type = get_fn_expr_argtype(fcinfo->flinfo, argno);
	Oid			output;
	bool		varlena;

	if (!OidIsValid(type))
		elog(ERROR, "cannot determine the type of argument %d of %s", argno + 1, what);
	col->type = getBaseType(type);
	col->kind = value_kind(col->type);
	getTypeOutputInfo(col->type, &output, &varlena);
	fmgr_info_cxt(output, &col->output, fcinfo->flinfo->fn_mcxt);
}

/*
 * Pushes one value of the given kind into the current object, allocating
 * in the current memory context what the value keeps.
 */
static void
push_datum(JsonbParseState **state, Datum value, bool isnull, ValueColumn *col)
{
	JsonbValue	v;
	char	   *text;

	if (isnull)
	{
		v.type = jbvNull;
		pushJsonbValue(state, WJB_VALUE, &v);
		return;
	}
	switch (col->kind)
	{
		case VALUE_BOOL:
			v.type = jbvBool;
			v.val.boolean = DatumGetBool(value);
			break;
		case VALUE_INTEGER:
			v.type = jbvNumeric;
			switch (col->type)
			{
				case INT2OID:
					v.val.numeric = int64_to_numeric(DatumGetInt16(value));
					break;
				case INT4OID:
					v.val.numeric = int64_to_numeric(DatumGetInt32(value));
					break;
				default:
					v.val.numeric = int64_to_numeric(DatumGetInt64(value));
					break;
			}
			break;
		case VALUE_NUMERIC:
			if (!numeric_is_nan(DatumGetNumeric(value)) && !numeric_is_inf(DatumGetNumeric(value)))
			{
				v.type = jbvNumeric;
				v.val.numeric = DatumGetNumericCopy(value);
				break;
			}
			/* FALLTHROUGH */
		case VALUE_FLOAT:
			text = OutputFunctionCall(&col->output, value);
			if (strpbrk(text, "Nn") == NULL)
			{
				v.type = jbvNumeric;
				v.val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(text),
																	ObjectIdGetDatum(InvalidOid),
																	Int32GetDatum(-1)));
			}
			else
			{
				v.type = jbvString;
				v.val.string.val = text;
				v.val.string.len = strlen(text);
			}
			break;
		case VALUE_DATETIME:
			v.type = jbvString;
			v.val.string.val = JsonEncodeDateTime(NULL, value, col->type, NULL);
			v.val.string.len = strlen(v.val.string.val);
			break;
		case VALUE_JSON:
			{
				Jsonb	   *json;

				if (col->type == JSONBOID)
					json = DatumGetJsonbPCopy(value);
				else
					json = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
															  CStringGetDatum(OutputFunctionCall(&col->output, value))));
				/* (a container is taken apart into the object; its strings stay in json) */
				v.type = jbvBinary;
				v.val.binary.data = &json->root;
				v.val.binary.len = VARSIZE(json) - VARHDRSZ;
			}
			break;
		case VALUE_TEXT:
			text = OutputFunctionCall(&col->output, value);
			v.type = jbvString;
			v.val.string.val = text;
			v.val.string.len = strlen(text);
			break;
	}
	pushJsonbValue(state, WJB_VALUE, &v);
}

/*
 * automation._cart_lines_add(state internal, product "any", quantity "any",
 *		name "any", price "any", only_left "any") RETURNS internal
 *
 * The transition function of the aggregate automation._cart_lines: adds
 * one line, {"product", "quantity", "name", "price", "only_left"}, to the
 * cart's array, each value as to_jsonb makes it (a value of an array or
 * composite type as its text).
 */
Datum
automation_cart_lines_add(PG_FUNCTION_ARGS)
{
	MemoryContext aggcontext;
	MemoryContext old;
	JsonbParseState *state;
	ValueColumn *cols = (ValueColumn *) fcinfo->flinfo->fn_extra;
	int			col;

	if (!AggCheckCallContext(fcinfo, &aggcontext))
		elog(ERROR, "automation._cart_lines_add called in a non-aggregate context");

	if (cols == NULL)
	{
		cols = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(ValueColumn) * LINE_MEMBERS);
		for (col = 0; col < LINE_MEMBERS; col++)
			describe_argument(fcinfo, col + 1, &cols[col], "automation._cart_lines");
		fcinfo->flinfo->fn_extra = cols;
	}

	old = MemoryContextSwitchTo(aggcontext);
	state = PG_ARGISNULL(0) ? NULL : (JsonbParseState *) PG_GETARG_POINTER(0);
	if (state == NULL)
		pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (col = 0; col < LINE_MEMBERS; col++)
	{
		push_key(&state, line_keys[col]);
		push_datum(&state, PG_GETARG_DATUM(col + 1), PG_ARGISNULL(col + 1), &cols[col]);
	}
	pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	MemoryContextSwitchTo(old);

	PG_RETURN_POINTER(state);
}

/*
 * automation._cart_lines_final(state internal) RETURNS jsonb
 *
 * The cart's lines as a JSON array, in the order they were added.  The
 * state is only read (the array is still open in it), so the function may
 * be called again on it.
 */
Datum
automation_cart_lines_final(PG_FUNCTION_ARGS)
{
	JsonbParseState *state;
	JsonbValue	array;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	state = (JsonbParseState *) PG_GETARG_POINTER(0);
	array = state->contVal;
	Assert(array.type == jbvArray);
	array.val.array.rawScalar = false;
	PG_RETURN_JSONB_P(JsonbValueToJsonb(&array));
}

/*
 * automation._object(VARIADIC "any") RETURNS jsonb
 *
 * The object jsonb_build_object builds -- keys and values alternating, a
 * later value of a key replacing an earlier one, each value as to_jsonb
 * makes it (one of an array or composite type as its text, as in a cart's
 * lines; no trigger passes one) -- without its two costs per call: the
 * look-up of every argument's type, and the trip of every number through
 * its text.  The triggers build each enrollment's context with it: a tick
 * that found 100,000 abandoned carts spent 0.11 s in jsonb_build_object
 * alone.
 */
Datum
automation_object(PG_FUNCTION_ARGS)
{
	int			nargs = PG_NARGS();
	ValueColumn *cols = (ValueColumn *) fcinfo->flinfo->fn_extra;
	JsonbParseState *state = NULL;
	JsonbValue *result;
	int			i;

	if (get_fn_expr_variadic(fcinfo->flinfo))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("automation._object takes its keys and values as arguments, not as an array")));
	if (nargs % 2 != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("automation._object takes keys and values in pairs, not %d arguments", nargs)));
	if (cols == NULL)
	{
		cols = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(ValueColumn) * Max(nargs, 1));
		for (i = 0; i < nargs; i++)
			describe_argument(fcinfo, i, &cols[i], "automation._object");
		fcinfo->flinfo->fn_extra = cols;
	}

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (i = 0; i < nargs; i += 2)
	{
		JsonbValue	key;

		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("argument %d of automation._object is a key, and must not be null", i + 1)));
		key.type = jbvString;
		if (cols[i].type == TEXTOID || cols[i].type == VARCHAROID)
		{
			text	   *name = PG_GETARG_TEXT_PP(i);

			key.val.string.val = VARDATA_ANY(name);
			key.val.string.len = VARSIZE_ANY_EXHDR(name);
		}
		else
		{
			key.val.string.val = OutputFunctionCall(&cols[i].output, PG_GETARG_DATUM(i));
			key.val.string.len = strlen(key.val.string.val);
		}
		pushJsonbValue(&state, WJB_KEY, &key);
		push_datum(&state, PG_GETARG_DATUM(i + 1), PG_ARGISNULL(i + 1), &cols[i + 1]);
	}
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	PG_RETURN_JSONB_P(JsonbValueToJsonb(result));
}
