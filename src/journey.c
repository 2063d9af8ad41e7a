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
 * every part is read once, and the payload written straight into jsonb's
 * binary form: the parts' objects and arrays, the cart's lines above all,
 * are copied in as they are, not taken apart and put together again (a
 * third of the time it took built as a tree of JsonbValues).
 *
 * The cart's lines, read once per tick for all the carts named, are one
 * JSON object per line gathered into an array per cart.  With
 * jsonb_build_object and jsonb_agg each line was serialized three times
 * and read back twice (jsonb_agg serializes each element it is given once
 * more before it takes it apart); automation._cart_lines writes each line
 * in jsonb's binary form as it comes, and the cart's array around them.
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
 * A message's payload is written straight into jsonb's binary form (see
 * utils/jsonb.h), not built as a tree of JsonbValues and converted: the
 * members that are objects or arrays -- a cart's lines above all -- are
 * copied as the containers they already are, where pushJsonbValue took
 * each one apart into the tree and JsonbValueToJsonb put it together again.
 * An object's members are sorted as jsonb sorts them (shorter keys first,
 * then bytewise), and of members with the same key the one added last is
 * kept, as pushJsonbValue keeps it.
 */
typedef struct Member
{
	const char *key;
	int			key_len;
	int			order;			/* the order added in */
	JsonbValue	value;			/* a scalar, or jbvBinary: a container */
} Member;

typedef struct Members
{
	Member	   *member;
	int			count;
	int			size;
} Members;

/*
 * The state of automation._cart_lines: the cart's lines written one after
 * the other as jsonb objects, and the entry of each (its type and length).
 */
typedef struct CartLines
{
	StringInfoData data;
	JEntry	   *entries;
	int			count;
	int			size;
} CartLines;

/*
 * Adds a member (JSON null when value is NULL); a jsonb scalar on its own,
 * a pseudo-array of one, is added as the scalar.
 */
static void
add_member(Members *ms, const char *key, int key_len, JsonbValue *value)
{
	Member	   *m;

	if (ms->count == ms->size)
	{
		ms->size = ms->size == 0 ? 16 : ms->size * 2;
		ms->member = ms->member == NULL ? palloc(sizeof(Member) * ms->size)
			: repalloc(ms->member, sizeof(Member) * ms->size);
	}
	m = &ms->member[ms->count];
	m->key = key;
	m->key_len = key_len;
	m->order = ms->count++;
	if (value == NULL)
		m->value.type = jbvNull;
	else if (value->type == jbvBinary && (value->val.binary.data->header & JB_FSCALAR))
	{
		if (!JsonbExtractScalar(value->val.binary.data, &m->value))
			elog(ERROR, "a scalar jsonb without its scalar");
	}
	else
		m->value = *value;
}

/* Adds a key given as a C string and a text value (JSON null when NULL). */
static void
add_text(Members *ms, const char *key, text *value)
{
	JsonbValue	v;

	if (value != NULL)
	{
		v.type = jbvString;
		v.val.string.len = VARSIZE_ANY_EXHDR(value);
		v.val.string.val = VARDATA_ANY(value);
	}
	add_member(ms, key, strlen(key), value == NULL ? NULL : &v);
}

/* Adds every member of a jsonb object, its containers as they are; NULL adds nothing. */
static void
add_members(Members *ms, JsonbContainer *object, const char *what)
{
	JsonbIterator *it;
	JsonbValue	v;
	const char *key = NULL;
	int			key_len = 0;
	JsonbIteratorToken token;

	if (object == NULL)
		return;
	if (!JsonContainerIsObject(object))
		elog(ERROR, "the %s of a message's payload is not a JSON object", what);
	it = JsonbIteratorInit(object);
	while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (token == WJB_KEY)
		{
			key = v.val.string.val;
			key_len = v.val.string.len;
		}
		else if (token == WJB_VALUE)
			add_member(ms, key, key_len, &v);
	}
}

/* jsonb's order of keys; of equal keys the one added last first. */
static int
member_cmp(const void *a, const void *b)
{
	const Member *ma = (const Member *) a;
	const Member *mb = (const Member *) b;

	if (ma->key_len != mb->key_len)
		return ma->key_len > mb->key_len ? 1 : -1;
	if (ma->key_len > 0)
	{
		int			c = memcmp(ma->key, mb->key, ma->key_len);

		if (c != 0)
			return c;
	}
	return ma->order > mb->order ? -1 : 1;
}

/* Pads the buffer with zero bytes to an int boundary; returns how many. */
static int
pad_to_int(StringInfo buf)
{
	int			pad = INTALIGN(buf->len) - buf->len;

	if (pad > 0)
	{
		enlargeStringInfo(buf, pad);
		memset(buf->data + buf->len, 0, pad);
		buf->len += pad;
	}
	return pad;
}

/*
 * Appends one value and returns its JEntry (its type and length, padding
 * included, as convertJsonbScalar and convertJsonbValue make it).
 */
static JEntry
write_value(StringInfo buf, JsonbValue *v)
{
	int			pad;
	int			len;

	switch (v->type)
	{
		case jbvNull:
			return JENTRY_ISNULL;
		case jbvBool:
			return v->val.boolean ? JENTRY_ISBOOL_TRUE : JENTRY_ISBOOL_FALSE;
		case jbvString:
			appendBinaryStringInfo(buf, v->val.string.val, v->val.string.len);
			return JENTRY_ISSTRING | v->val.string.len;
		case jbvNumeric:
			pad = pad_to_int(buf);
			len = VARSIZE_ANY(v->val.numeric);
			appendBinaryStringInfo(buf, (char *) v->val.numeric, len);
			return JENTRY_ISNUMERIC | (pad + len);
		case jbvBinary:
			pad = pad_to_int(buf);
			appendBinaryStringInfo(buf, (char *) v->val.binary.data, v->val.binary.len);
			return JENTRY_ISCONTAINER | (pad + v->val.binary.len);
		default:
			elog(ERROR, "unexpected JSON value of type %d to write", (int) v->type);
	}
	return 0;					/* keep the compiler quiet */
}

/*
 * The JEntry of child i of a container, from the child's type and length:
 * total sums the lengths so far, and every JB_OFFSET_STRIDE-th child
 * carries that end offset instead of its length, as convertJsonbObject and
 * convertJsonbArray write them.
 */
static JEntry
child_entry(JEntry entry, int i, uint32 *total)
{
	*total += JBE_OFFLENFLD(entry);
	if (*total > JENTRY_OFFLENMASK)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("total size of jsonb elements exceeds the maximum of %d bytes", JENTRY_OFFLENMASK)));
	if (i % JB_OFFSET_STRIDE == 0)
		entry = (entry & JENTRY_TYPEMASK) | *total | JENTRY_HAS_OFF;
	return entry;
}

/*
 * Appends the members as a jsonb object container (as convertJsonbObject
 * writes one), at an int boundary; returns its JEntry.
 */
static JEntry
write_object(StringInfo buf, Members *ms)
{
	int			base = buf->len;
	int			n = 0;
	int			entries;
	uint32		total = 0;
	uint32		header;
	int			i;

	if (ms->count > 1)
		qsort(ms->member, ms->count, sizeof(Member), member_cmp);
	/* the first of each run of equal keys, the one added last */
	for (i = 0; i < ms->count; i++)
	{
		if (n > 0 && ms->member[i].key_len == ms->member[n - 1].key_len &&
			memcmp(ms->member[i].key, ms->member[n - 1].key, ms->member[i].key_len) == 0)
			continue;
		ms->member[n++] = ms->member[i];
	}
	if (n > JB_CMASK)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many members for a jsonb object: %d", n)));

	/* (the padding before the container counts as its part, as jsonb's) */
	pad_to_int(buf);
	header = n | JB_FOBJECT;
	appendBinaryStringInfo(buf, (char *) &header, sizeof(uint32));
	entries = buf->len;
	enlargeStringInfo(buf, sizeof(JEntry) * n * 2);
	buf->len += sizeof(JEntry) * n * 2;

	for (i = 0; i < n * 2; i++)
	{
		Member	   *m = &ms->member[i % n];
		JEntry		entry;

		if (i < n)
		{
			appendBinaryStringInfo(buf, m->key, m->key_len);
			entry = JENTRY_ISSTRING | m->key_len;
		}
		else
			entry = write_value(buf, &m->value);
		entry = child_entry(entry, i, &total);
		memcpy(buf->data + entries + sizeof(JEntry) * i, &entry, sizeof(JEntry));
	}
	return JENTRY_ISCONTAINER | (buf->len - base);
}

/* The members as a jsonb datum: its varlena header, then the object. */
static Jsonb *
object_jsonb(Members *ms)
{
	StringInfoData buf;
	Jsonb	   *result;

	initStringInfo(&buf);
	appendStringInfoSpaces(&buf, VARHDRSZ);
	write_object(&buf, ms);
	result = (Jsonb *) buf.data;
	SET_VARSIZE(result, buf.len);
	return result;
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
	Members		top = {0};
	JsonbValue *own;
	JsonbValue	v;

	add_members(&top, ARG_CONTAINER(0), "step's part");
	add_members(&top, ARG_CONTAINER(1), "variant's part");
	own = find_key(context, "payload");
	if (own != NULL && own->type != jbvNull)
	{
		if (own->type != jbvBinary)
			elog(ERROR, "the enrollment's part of a message's payload is not a JSON object");
		add_members(&top, own->val.binary.data, "enrollment's part");
	}
	add_text(&top, "first_name", PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3));
	add_text(&top, "journey", PG_ARGISNULL(4) ? NULL : PG_GETARG_TEXT_PP(4));
	if (!PG_ARGISNULL(5))
	{
		v.type = jbvNumeric;
		v.val.numeric = int64_to_numeric(PG_GETARG_INT32(5));
	}
	add_member(&top, "step", 4, PG_ARGISNULL(5) ? NULL : &v);
	add_text(&top, "variant", PG_ARGISNULL(6) ? NULL : PG_GETARG_TEXT_PP(6));
	add_text(&top, "customer_key", PG_ARGISNULL(7) ? NULL : PG_GETARG_TEXT_PP(7));
	add_members(&top, ARG_CONTAINER(8), "extras' part");
	if (!PG_ARGISNULL(9) && PG_GETARG_BOOL(9))
	{
		JsonbValue *cart_id = find_key(context, "cart_id");
		text	   *id_text = scalar_text(cart_id);
		Members		cart = {0};
		StringInfoData cart_buf;
		uint32		empty = JB_FARRAY;

		add_member(&cart, "cart_id", 7, cart_id);
		add_member(&cart, "total", 5, find_key(context, "cart_total"));
		add_member(&cart, "stage", 5, find_key(context, "stage"));
		add_text(&cart, "url",
				 PG_ARGISNULL(10) || id_text == NULL ? NULL :
				 DatumGetTextPP(DirectFunctionCall3Coll(replace_text, DEFAULT_COLLATION_OID, PG_GETARG_DATUM(10),
													CStringGetTextDatum("{cart_id}"),
													PointerGetDatum(id_text))));
		v.type = jbvBinary;
		if (PG_ARGISNULL(11))
		{
			/* an empty array: its header alone */
			v.val.binary.data = (JsonbContainer *) &empty;
			v.val.binary.len = sizeof(uint32);
		}
		else
		{
			Jsonb	   *lines = PG_GETARG_JSONB_P(11);

			v.val.binary.data = &lines->root;
			v.val.binary.len = VARSIZE(lines) - VARHDRSZ;
		}
		add_member(&cart, "lines", 5, &v);
		/* (the cart serialized on its own, then copied in as a container) */
		initStringInfo(&cart_buf);
		write_object(&cart_buf, &cart);
		v.val.binary.data = (JsonbContainer *) cart_buf.data;
		v.val.binary.len = cart_buf.len;
		add_member(&top, "cart", 4, &v);
	}

	PG_RETURN_JSONB_P(object_jsonb(&top));
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
 * datum_value, in fn_mcxt; what names the function in the error for an
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
 * The JSON value of one argument, allocating in the current memory context
 * what the value keeps (a json or jsonb value as its container).
 */
static void
datum_value(Datum value, bool isnull, ValueColumn *col, JsonbValue *out)
{
	JsonbValue	v;
	char	   *text;

	if (isnull)
	{
		out->type = jbvNull;
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
				/* (its container is copied into the object as it is) */
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
	*out = v;
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
	CartLines  *state;
	ValueColumn *cols = (ValueColumn *) fcinfo->flinfo->fn_extra;
	Members		line = {0};
	JsonbValue	v;
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

	state = PG_ARGISNULL(0) ? NULL : (CartLines *) PG_GETARG_POINTER(0);
	if (state == NULL)
	{
		old = MemoryContextSwitchTo(aggcontext);
		state = palloc(sizeof(CartLines));
		initStringInfo(&state->data);
		state->count = 0;
		state->size = 8;
		state->entries = palloc(sizeof(JEntry) * state->size);
		MemoryContextSwitchTo(old);
	}
	/* (the line put together in the call's memory, written into the cart's) */
	for (col = 0; col < LINE_MEMBERS; col++)
	{
		datum_value(PG_GETARG_DATUM(col + 1), PG_ARGISNULL(col + 1), &cols[col], &v);
		add_member(&line, line_keys[col], strlen(line_keys[col]), &v);
	}
	if (state->count == state->size)
	{
		state->size *= 2;
		state->entries = repalloc(state->entries, sizeof(JEntry) * state->size);
	}
	state->entries[state->count++] = write_object(&state->data, &line);

	PG_RETURN_POINTER(state);
}

/*
 * automation._cart_lines_final(state internal) RETURNS jsonb
 *
 * The cart's lines as a JSON array, in the order they were added: the
 * array's header and its elements' entries, then the lines as they were
 * written (each at an int boundary from the start of the lines, where the
 * elements begin).  The state is only read, so the function may be called
 * again on it.
 */
Datum
automation_cart_lines_final(PG_FUNCTION_ARGS)
{
	CartLines  *state;
	Jsonb	   *result;
	Size		size;
	uint32		total = 0;
	int			i;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	state = (CartLines *) PG_GETARG_POINTER(0);
	if (state->count > JB_CMASK)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a cart has too many lines for a jsonb array")));
	size = VARHDRSZ + sizeof(uint32) + sizeof(JEntry) * state->count + state->data.len;
	result = palloc(size);
	SET_VARSIZE(result, size);
	result->root.header = state->count | JB_FARRAY;
	for (i = 0; i < state->count; i++)
		result->root.children[i] = child_entry(state->entries[i], i, &total);
	memcpy(&result->root.children[state->count], state->data.data, state->data.len);
	PG_RETURN_JSONB_P(result);
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
	Members		object = {0};
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

	for (i = 0; i < nargs; i += 2)
	{
		JsonbValue	v;
		char	   *key;
		int			key_len;

		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("argument %d of automation._object is a key, and must not be null", i + 1)));
		if (cols[i].type == TEXTOID || cols[i].type == VARCHAROID)
		{
			text	   *name = PG_GETARG_TEXT_PP(i);

			key = VARDATA_ANY(name);
			key_len = VARSIZE_ANY_EXHDR(name);
		}
		else
		{
			key = OutputFunctionCall(&cols[i].output, PG_GETARG_DATUM(i));
			key_len = strlen(key);
		}
		datum_value(PG_GETARG_DATUM(i + 1), PG_ARGISNULL(i + 1), &cols[i + 1], &v);
		add_member(&object, key, key_len, &v);
	}
	PG_RETURN_JSONB_P(object_jsonb(&object));
}
