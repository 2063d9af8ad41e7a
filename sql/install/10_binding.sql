-- Binding the shop's tables.
--
-- The shop's schema is the source of truth and is never altered.  Each
-- bind_* call names a relation and its columns; the columns are checked at
-- once (they exist, their types fit, the caller can read them, keys hash)
-- and the mapping is stored in automation.source.  Everything the extension
-- later reads from the shop is built from this mapping with quoted
-- identifiers.
--
-- Keys: every binding says which of its columns is a customer, order, cart
-- or product key.  All columns holding the same kind of key must have one
-- type, so the engine can join them without casts.  The extension's own
-- per-customer tables declare their key column "customer_key" as text and
-- are switched to the bound customer key type by automation._retype_keys(),
-- so what the extension stores per customer joins back to the shop's
-- customers on the shop's own type.

CREATE TABLE automation.source (
    kind text NOT NULL,
    relation_schema name NOT NULL,
    relation_name name NOT NULL,
    columns jsonb NOT NULL,
    column_types jsonb NOT NULL,
    keys jsonb NOT NULL,
    options jsonb NOT NULL DEFAULT '{}',
    bound_by name NOT NULL DEFAULT current_user,
    bound_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT source_pkey PRIMARY KEY (kind),
    CONSTRAINT source_kind_check CHECK (kind IN ('orders', 'order_lines', 'customers', 'carts',
                                                 'cart_lines', 'products', 'signups')),
    CONSTRAINT source_columns_check CHECK (jsonb_typeof(columns) = 'object'),
    CONSTRAINT source_keys_check CHECK (jsonb_typeof(keys) = 'object')
);
COMMENT ON TABLE automation.source IS 'the shop''s relations and columns bound with automation.bind_*(); one row per kind';
COMMENT ON COLUMN automation.source.columns IS 'role -> column name, e.g. {"customer": "customer_id"}';
COMMENT ON COLUMN automation.source.column_types IS 'role -> the column''s type when it was bound';
COMMENT ON COLUMN automation.source.keys IS 'key kind (customer, order, cart, product) -> type of the column holding it';
COMMENT ON COLUMN automation.source.bound_by IS 'the role that made the binding; shop reads never run with more privilege than it has';
SELECT pg_catalog.pg_extension_config_dump('automation.source', '');

CREATE FUNCTION automation._check_key_type(relation text, column_name name, typ regtype)
RETURNS void
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'automation_check_key_type';
REVOKE ALL ON FUNCTION automation._check_key_type(text, name, regtype) FROM PUBLIC;

CREATE FUNCTION automation._column_type(rel regclass, col name)
RETURNS regtype
LANGUAGE C STABLE STRICT
AS 'MODULE_PATHNAME', 'automation_column_type';
REVOKE ALL ON FUNCTION automation._column_type(regclass, name) FROM PUBLIC;

-- _bind: validates one binding completely, then stores it.  Nothing is
-- written unless every check passed.  roles, columns, classes and required
-- run in parallel: role "customer" is the argument customer_column, class
-- says what the column must hold:
--   key:customer, key:order, key:cart, key:product   a hashable key
--   time     timestamptz, timestamp or date
--   amount   numeric, integer, bigint, smallint, double precision or real
--   text     a string type
--   status   a string type or an enum
--   consent  boolean, or a timestamp/date that is set when consent was given
CREATE FUNCTION automation._bind(kind text, relation regclass, roles text[], columns name[],
                                 classes text[], required boolean[], options jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn text := 'automation.bind_' || kind;
    rel record;
    col_map jsonb := '{}';
    type_map jsonb := '{}';
    key_map jsonb := '{}';
    i int;
    att record;
    base_type oid;
    base_name text;
    type_ok boolean;
    expected text;
    other record;
    key_kind text;
BEGIN
    -- One binding at a time: the key-type check below must see the others as committed.
    LOCK TABLE automation.source IN SHARE ROW EXCLUSIVE MODE;

    IF relation IS NULL THEN
        RAISE EXCEPTION 'relation must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = format('Pass the shop''s relation to %s(), e.g. ''shop.%s''.', fn, kind);
    END IF;

    SELECT c.relkind, n.nspname, c.relname INTO rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = relation;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'relation with OID % does not exist', relation::oid
            USING ERRCODE = 'undefined_table';
    END IF;
    IF rel.relkind NOT IN ('r', 'p', 'v', 'm', 'f') THEN
        RAISE EXCEPTION '% is not a table, view or materialized view', relation
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = format('%s() reads the shop''s %s from a table, view, materialized view or foreign table.', fn, replace(kind, '_', ' '));
    END IF;
    IF rel.nspname = 'automation' THEN
        RAISE EXCEPTION '% belongs to the automation extension', relation
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Bind the shop''s own relations.';
    END IF;

    FOR i IN 1 .. array_length(roles, 1) LOOP
        IF columns[i] IS NULL THEN
            IF required[i] THEN
                RAISE EXCEPTION '%_column must not be null', roles[i]
                    USING ERRCODE = 'null_value_not_allowed',
                          HINT = format('Name the column of %s that holds the %s.', relation, replace(roles[i], '_', ' '));
            END IF;
            CONTINUE;
        END IF;

        SELECT a.attnum, a.atttypid, a.atttypmod INTO att
          FROM pg_attribute a
         WHERE a.attrelid = relation AND a.attname = columns[i] AND a.attnum > 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'column "%" does not exist in relation %', columns[i], relation
                USING ERRCODE = 'undefined_column',
                      DETAIL = format('The %s_column argument of %s() names the column of %s that holds the %s.',
                                      roles[i], fn, relation, replace(roles[i], '_', ' ')),
                      HINT = 'Columns of ' || relation::text || ': ' ||
                             coalesce((SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
                                         FROM pg_attribute a
                                        WHERE a.attrelid = relation AND a.attnum > 0 AND NOT a.attisdropped), '(none)') || '.';
        END IF;

        base_type := att.atttypid;
        WHILE (SELECT t.typtype = 'd' FROM pg_type t WHERE t.oid = base_type) LOOP
            base_type := (SELECT t.typbasetype FROM pg_type t WHERE t.oid = base_type);
        END LOOP;
        base_name := format_type(base_type, NULL);

        CASE
            WHEN classes[i] LIKE 'key:%' THEN
                type_ok := true;
                expected := NULL;
            WHEN classes[i] = 'time' THEN
                type_ok := base_type IN ('timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype);
                expected := 'timestamptz, timestamp or date';
            WHEN classes[i] = 'amount' THEN
                type_ok := base_type IN ('numeric'::regtype, 'integer'::regtype, 'bigint'::regtype, 'smallint'::regtype,
                                         'double precision'::regtype, 'real'::regtype);
                expected := 'numeric, integer, bigint, smallint, double precision or real';
            WHEN classes[i] = 'text' THEN
                type_ok := (SELECT t.typcategory = 'S' FROM pg_type t WHERE t.oid = base_type);
                expected := 'text, varchar or another string type';
            WHEN classes[i] = 'status' THEN
                type_ok := (SELECT t.typcategory IN ('S', 'E') FROM pg_type t WHERE t.oid = base_type);
                expected := 'text, varchar, another string type or an enum';
            WHEN classes[i] = 'consent' THEN
                type_ok := base_type IN ('boolean'::regtype, 'timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype);
                expected := 'boolean, or timestamptz, timestamp or date set when consent was given';
            ELSE
                RAISE EXCEPTION 'unknown column class "%"', classes[i];
        END CASE;
        IF NOT type_ok THEN
            RAISE EXCEPTION 'column "%" of relation % has type %', columns[i], relation, format_type(att.atttypid, att.atttypmod)
                USING ERRCODE = 'datatype_mismatch',
                      DETAIL = format('The %s column of the %s binding must be of type %s.', roles[i], kind, expected),
                      HINT = format('Bind another column, or a view of %s that converts it.', relation);
        END IF;

        IF NOT has_column_privilege(relation, att.attnum, 'SELECT') THEN
            RAISE EXCEPTION 'permission denied to read column "%" of relation %', columns[i], relation
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = format('The extension reads the shop''s tables with the privileges of the role that bound them, here %I.', current_user),
                      HINT = format('GRANT SELECT ON %s TO %I, or bind as a role that can read it.', relation, current_user);
        END IF;

        IF classes[i] LIKE 'key:%' THEN
            PERFORM automation._check_key_type(relation::text, columns[i], att.atttypid::regtype);
            -- (the extension's tables take the key's type without its
            -- modifier: a character(12) key would be stored as character(1))
            IF att.atttypid IN ('bpchar'::regtype, 'bit'::regtype) AND att.atttypmod >= 0 THEN
                RAISE EXCEPTION 'column "%" of relation % cannot be used as a key', columns[i], relation
                    USING ERRCODE = 'datatype_mismatch',
                          DETAIL = format('Its type %s has a fixed length; keys are stored without it.',
                                          format_type(att.atttypid, att.atttypmod)),
                          HINT = format('Bind a view of %s that casts the key to text or varchar.', relation);
            END IF;
            key_kind := substr(classes[i], 5);
            key_map := key_map || jsonb_build_object(key_kind, format_type(att.atttypid, NULL));
        END IF;

        col_map := col_map || jsonb_build_object(roles[i], columns[i]);
        type_map := type_map || jsonb_build_object(roles[i], format_type(att.atttypid, att.atttypmod));
    END LOOP;

    -- Columns holding the same kind of key must agree on its type.
    FOR key_kind IN SELECT jsonb_object_keys(key_map) LOOP
        SELECT s.kind, s.relation_schema, s.relation_name, s.keys ->> key_kind AS key_type INTO other
          FROM automation.source s
         WHERE s.kind <> _bind.kind AND s.keys ? key_kind AND s.keys ->> key_kind <> key_map ->> key_kind
         ORDER BY s.kind = 'customers' DESC, s.kind
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION '% key type % does not match the % binding', key_kind, key_map ->> key_kind, other.kind
                USING ERRCODE = 'datatype_mismatch',
                      DETAIL = format('The %s key of %s has type %s, but %I.%I, bound as %s, holds it as %s.',
                                      key_kind, relation, key_map ->> key_kind,
                                      other.relation_schema, other.relation_name, other.kind, other.key_type),
                      HINT = format('Bind columns of one type for every %s key, or remove the other binding first with automation.unbind(%L).',
                                    key_kind, other.kind);
        END IF;
    END LOOP;

    INSERT INTO automation.source AS s (kind, relation_schema, relation_name, columns, column_types, keys, options, bound_by, bound_at)
    VALUES (kind, rel.nspname, rel.relname, col_map, type_map, key_map, coalesce(options, '{}'), current_user, now())
    ON CONFLICT ON CONSTRAINT source_pkey DO UPDATE
       SET relation_schema = excluded.relation_schema, relation_name = excluded.relation_name,
           columns = excluded.columns, column_types = excluded.column_types, keys = excluded.keys,
           options = excluded.options, bound_by = excluded.bound_by, bound_at = excluded.bound_at;

    PERFORM automation._retype_keys();
END
$$;
REVOKE ALL ON FUNCTION automation._bind(text, regclass, text[], name[], text[], boolean[], jsonb) FROM PUBLIC;

-- customer_key_type(): the type of the shop's customer key, from whichever
-- binding holds one (they agree), or NULL when nothing with a customer is bound.
-- As the owner: analysts may call it, and do not read automation.source.
CREATE FUNCTION automation.customer_key_type()
RETURNS regtype
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (s.keys ->> 'customer')::regtype
      FROM automation.source s
     WHERE s.keys ? 'customer'
     ORDER BY s.kind = 'customers' DESC, s.kind
     LIMIT 1
$$;
COMMENT ON FUNCTION automation.customer_key_type() IS 'the type of the shop''s customer key as bound, or NULL';

-- _check_key_type(t, bound, what): refuses a key of type t unless t is a
-- built-in type (schema pg_catalog) or bound, the type the shop's key
-- column has.  The functions that take a key of any type (anyelement) and
-- run as the extension's owner call it before they convert the key to
-- text: a conversion to text may be a cast the caller created for a type of
-- their own (CREATE CAST needs only ownership of the type, and casts are
-- found whatever the search_path), which would then run as the owner.  No
-- one but a superuser can add a cast to or from a built-in type, and the
-- shop's own type is the shop owner's.
CREATE FUNCTION automation._check_key_type(t regtype, bound regtype, what text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF t IS DISTINCT FROM bound
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_type ty WHERE ty.oid = t AND ty.typnamespace = 'pg_catalog'::regnamespace) THEN
        RAISE EXCEPTION '% must be of a built-in type or of the shop''s key type, not %', what, t
            USING ERRCODE = 'datatype_mismatch',
                  HINT = 'Pass the key as text or in the type of the bound key column.';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION automation._check_key_type(regtype, regtype, text) FROM PUBLIC;

-- _retype_keys(): gives every "customer_key" column of the extension's own
-- tables the bound customer key type (text while nothing is bound), so that
-- they join to the shop's tables without casts.  Also run after a restore
-- from pg_dump, which recreates those tables as installed, with text keys.
-- Views over such a column are recreated around the change, keeping their
-- privileges and their membership of the extension.  It runs as the
-- extension's owner, who owns the tables, whoever binds.
CREATE FUNCTION automation._retype_keys()
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target text := coalesce(automation.customer_key_type()::text, 'text');
    col record;
    v record;
    views jsonb := '[]';
    acl record;
    locked boolean := false;
BEGIN
    FOR col IN
        SELECT c.oid::regclass AS rel, c.relkind
          FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
         WHERE c.relnamespace = 'automation'::regnamespace
           AND c.relkind IN ('r', 'p', 'c') AND NOT c.relispartition
           AND a.attname = 'customer_key' AND NOT a.attisdropped
           AND format_type(a.atttypid, NULL) <> target
         ORDER BY c.relname
    LOOP
        -- No tick while the tables change: one running is waited for, and
        -- one starting meanwhile returns at once.  (A tick reads the tables
        -- in its own order, the change locks them in name order: the two
        -- side by side could each wait for the other.)  A tick that retypes
        -- holds the lock already.
        IF NOT locked THEN
            LOCK TABLE automation.tick_lock IN SHARE UPDATE EXCLUSIVE MODE;
            locked := true;
        END IF;
        -- Customers noted for the next segment evaluation: with a new key
        -- type the segments are evaluated for everybody anyway.
        IF col.rel = 'automation.segment_dirty'::regclass THEN
            DELETE FROM automation.segment_dirty;
        END IF;
        -- Views that read the column would block the change: note them and drop them.
        FOR v IN
            SELECT DISTINCT vc.oid, vc.oid::regclass::text AS name, pg_get_viewdef(vc.oid) AS def,
                   vc.reloptions, vc.relacl, obj_description(vc.oid, 'pg_class') AS comment,
                   EXISTS (SELECT FROM pg_depend e
                            WHERE e.classid = 'pg_class'::regclass AND e.objid = vc.oid
                              AND e.refclassid = 'pg_extension'::regclass AND e.deptype = 'e') AS member
              FROM pg_depend d
              JOIN pg_rewrite rw ON rw.oid = d.objid AND d.classid = 'pg_rewrite'::regclass
              JOIN pg_class vc ON vc.oid = rw.ev_class
             WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = col.rel
               AND vc.oid <> col.rel
        LOOP
            views := views || jsonb_build_object('name', v.name, 'def', v.def, 'member', v.member,
                                                 'options', coalesce(array_to_string(v.reloptions, ', '), ''),
                                                 'acl', coalesce(v.relacl::text[], '{}'), 'comment', v.comment);
            IF v.member THEN
                EXECUTE format('ALTER EXTENSION automation DROP VIEW %s', v.name);
            END IF;
            EXECUTE format('DROP VIEW %s', v.name);
        END LOOP;

        IF col.relkind = 'c' THEN
            EXECUTE format('ALTER TYPE %s ALTER ATTRIBUTE customer_key TYPE %s', col.rel, target);
        ELSE
            BEGIN
                EXECUTE format('ALTER TABLE %s ALTER COLUMN customer_key TYPE %s USING customer_key::text::%s',
                               col.rel, target, target);
            EXCEPTION WHEN data_exception THEN
                RAISE EXCEPTION 'customer keys stored in % cannot become %', col.rel, target
                    USING ERRCODE = 'datatype_mismatch',
                          DETAIL = SQLERRM,
                          HINT = 'The shop''s customer key type changed.  Bind a key of the old type, or empty the table first if its rows may go.';
            END;
        END IF;
    END LOOP;

    FOR v IN SELECT * FROM jsonb_to_recordset(views) AS x(name text, def text, member boolean, options text, acl text[],
                                                         comment text) LOOP
        EXECUTE format('CREATE VIEW %s %s AS %s', v.name,
                       CASE WHEN v.options <> '' THEN 'WITH (' || v.options || ')' ELSE '' END, v.def);
        IF v.comment IS NOT NULL THEN
            EXECUTE format('COMMENT ON VIEW %s IS %L', v.name, v.comment);
        END IF;
        FOR acl IN SELECT a.grantee, a.privilege_type
                     FROM aclexplode(CASE WHEN cardinality(v.acl) > 0 THEN v.acl::aclitem[] END) a
                    WHERE a.grantee <> (SELECT c.relowner FROM pg_class c WHERE c.oid = v.name::regclass)
        LOOP
            EXECUTE format('GRANT %s ON %s TO %s', acl.privilege_type, v.name,
                           CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE acl.grantee::regrole::text END);
        END LOOP;
        IF v.member THEN
            EXECUTE format('ALTER EXTENSION automation ADD VIEW %s', v.name);
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION automation._retype_keys() FROM PUBLIC;

-- _keys_mistyped(): whether _retype_keys() has anything to change.  The
-- tick and enqueue ask this before every run, almost always in vain, so it
-- asks one table, through the catalog cache: _retype_keys changes them all
-- in one transaction, and a restore from pg_dump recreates them all with
-- text keys.
CREATE FUNCTION automation._keys_mistyped()
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT automation._column_type('automation.outbox', 'customer_key')
           IS DISTINCT FROM coalesce(automation.customer_key_type(), 'text'::regtype)
$$;
REVOKE ALL ON FUNCTION automation._keys_mistyped() FROM PUBLIC;

CREATE FUNCTION automation.bind_orders(relation regclass, customer_column name, placed_at_column name,
                                       total_column name, order_id_column name DEFAULT NULL,
                                       status_column name DEFAULT NULL, counted_statuses text[] DEFAULT NULL,
                                       ship_to_column name DEFAULT NULL, bill_to_column name DEFAULT NULL,
                                       status_changed_at_column name DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    status_type regtype;
    unknown text;
BEGIN
    IF status_changed_at_column IS NOT NULL AND status_column IS NULL THEN
        RAISE EXCEPTION 'status_changed_at_column needs status_column'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'It says when an order''s status (the status column) last changed.';
    END IF;
    IF counted_statuses IS NOT NULL THEN
        IF status_column IS NULL THEN
            RAISE EXCEPTION 'counted_statuses needs status_column'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Name the column of the orders that holds their status, or leave counted_statuses NULL to count every order.';
        END IF;
        IF array_ndims(counted_statuses) > 1 THEN
            RAISE EXCEPTION 'counted_statuses must be a one-dimensional array'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'For example ARRAY[''paid'', ''shipped''].';
        END IF;
        IF cardinality(counted_statuses) = 0 OR array_position(counted_statuses, NULL) IS NOT NULL THEN
            RAISE EXCEPTION 'counted_statuses must list at least one status and no NULL'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'For example ARRAY[''paid'', ''shipped'', ''delivered''].';
        END IF;
        -- A status of an enum type has its labels: one not among them would
        -- never match, and the orders it was meant to count would not count.
        status_type := automation._column_type(relation, status_column);
        IF (SELECT t.typtype FROM pg_type t WHERE t.oid = status_type) = 'e' THEN
            unknown := (SELECT string_agg(format('"%s"', x.label), ', ' ORDER BY x.n)
                          FROM unnest(counted_statuses) WITH ORDINALITY x (label, n)
                         WHERE NOT EXISTS (SELECT FROM pg_enum e WHERE e.enumtypid = status_type AND e.enumlabel = x.label));
            IF unknown IS NOT NULL THEN
                RAISE EXCEPTION 'counted_statuses names % that the status column''s type % does not have', unknown, status_type
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = format('Its labels are %s.',
                                        (SELECT string_agg(format('"%s"', e.enumlabel), ', ' ORDER BY e.enumsortorder)
                                           FROM pg_enum e WHERE e.enumtypid = status_type));
            END IF;
        END IF;
    END IF;
    IF (ship_to_column IS NULL) <> (bill_to_column IS NULL) THEN
        RAISE EXCEPTION 'ship_to_column and bill_to_column go together'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name both the shipping and the billing address (or city) column, or neither.';
    END IF;
    PERFORM automation._bind('orders', relation,
        ARRAY['customer', 'placed_at', 'total', 'order_id', 'status', 'ship_to', 'bill_to', 'status_changed_at'],
        ARRAY[customer_column, placed_at_column, total_column, order_id_column, status_column, ship_to_column, bill_to_column,
              status_changed_at_column],
        ARRAY['key:customer', 'time', 'amount', 'key:order', 'status', 'text', 'text', 'time'],
        ARRAY[true, true, true, false, false, false, false, false],
        CASE WHEN counted_statuses IS NULL THEN '{}'::jsonb
             ELSE jsonb_build_object('counted_statuses', to_jsonb(counted_statuses)) END);
END
$$;
COMMENT ON FUNCTION automation.bind_orders(regclass, name, name, name, name, name, text[], name, name, name) IS 'bind the shop''s orders: who ordered, when, for how much; optionally which statuses count, where they were shipped and billed, and when the status last changed';

CREATE FUNCTION automation.bind_order_lines(relation regclass, order_id_column name, product_column name,
                                            quantity_column name, price_column name DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT automation._bind('order_lines', relation,
        ARRAY['order_id', 'product', 'quantity', 'price'],
        ARRAY[order_id_column, product_column, quantity_column, price_column],
        ARRAY['key:order', 'key:product', 'amount', 'amount'],
        ARRAY[true, true, true, false])
$$;
COMMENT ON FUNCTION automation.bind_order_lines(regclass, name, name, name, name) IS 'bind the shop''s order lines: which products, how many, at what unit price';

CREATE FUNCTION automation.bind_customers(relation regclass, customer_column name, email_column name,
                                          consent_column name, first_name_column name DEFAULT NULL,
                                          timezone_column name DEFAULT NULL, phone_column name DEFAULT NULL,
                                          birth_date_column name DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT automation._bind('customers', relation,
        ARRAY['customer', 'email', 'consent', 'first_name', 'timezone', 'phone', 'birth_date'],
        ARRAY[customer_column, email_column, consent_column, first_name_column, timezone_column, phone_column, birth_date_column],
        ARRAY['key:customer', 'text', 'consent', 'text', 'text', 'text', 'time'],
        ARRAY[true, true, true, false, false, false, false])
$$;
COMMENT ON FUNCTION automation.bind_customers(regclass, name, name, name, name, name, name, name) IS 'bind the shop''s customers: key, e-mail address, marketing consent, and optionally first name, time zone, phone and birth date';

CREATE FUNCTION automation.bind_carts(relation regclass, cart_id_column name, customer_column name,
                                      updated_at_column name, total_column name, order_id_column name DEFAULT NULL,
                                      stage_column name DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT automation._bind('carts', relation,
        ARRAY['cart_id', 'customer', 'updated_at', 'total', 'order_id', 'stage'],
        ARRAY[cart_id_column, customer_column, updated_at_column, total_column, order_id_column, stage_column],
        ARRAY['key:cart', 'key:customer', 'time', 'amount', 'key:order', 'status'],
        ARRAY[true, true, true, true, false, false])
$$;
COMMENT ON FUNCTION automation.bind_carts(regclass, name, name, name, name, name, name) IS 'bind the shop''s carts: key, customer, last change, value, and optionally the order it became and the checkout stage reached';

CREATE FUNCTION automation.bind_cart_lines(relation regclass, cart_id_column name, product_column name,
                                           quantity_column name)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT automation._bind('cart_lines', relation,
        ARRAY['cart_id', 'product', 'quantity'],
        ARRAY[cart_id_column, product_column, quantity_column],
        ARRAY['key:cart', 'key:product', 'amount'],
        ARRAY[true, true, true])
$$;
COMMENT ON FUNCTION automation.bind_cart_lines(regclass, name, name, name) IS 'bind the shop''s cart lines: which products, how many';

CREATE FUNCTION automation.bind_products(relation regclass, product_column name, name_column name,
                                         category_column name DEFAULT NULL, stock_column name DEFAULT NULL,
                                         consumption_days_column name DEFAULT NULL, price_column name DEFAULT NULL,
                                         added_at_column name DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT automation._bind('products', relation,
        ARRAY['product', 'name', 'category', 'stock', 'consumption_days', 'price', 'added_at'],
        ARRAY[product_column, name_column, category_column, stock_column, consumption_days_column, price_column, added_at_column],
        ARRAY['key:product', 'text', 'text', 'amount', 'amount', 'amount', 'time'],
        ARRAY[true, true, false, false, false, false, false])
$$;
COMMENT ON FUNCTION automation.bind_products(regclass, name, name, name, name, name, name, name) IS 'bind the shop''s products: key, name, and optionally category, stock, days one unit lasts, price and when it was added';

CREATE FUNCTION automation.bind_signups(relation regclass, customer_column name, signed_up_at_column name)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT automation._bind('signups', relation,
        ARRAY['customer', 'signed_up_at'],
        ARRAY[customer_column, signed_up_at_column],
        ARRAY['key:customer', 'time'],
        ARRAY[true, true])
$$;
COMMENT ON FUNCTION automation.bind_signups(regclass, name, name) IS 'bind the shop''s newsletter sign-ups: who, when';

-- unbind(kind): removes a binding.  Removing one that does not exist is a
-- no-op that says so and returns false.
CREATE FUNCTION automation.unbind(kind text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kinds text[] := ARRAY['orders', 'order_lines', 'customers', 'carts', 'cart_lines', 'products', 'signups'];
    needed_by text[];
BEGIN
    IF kind IS NULL THEN
        RAISE EXCEPTION 'kind must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT kind = ANY (kinds) THEN
        RAISE EXCEPTION 'unknown binding kind "%"', kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Kinds are: ' || array_to_string(kinds, ', ') || '.';
    END IF;
    DELETE FROM automation.source s WHERE s.kind = unbind.kind;
    IF NOT FOUND THEN
        RAISE NOTICE 'nothing is bound as %', kind;
        RETURN false;
    END IF;
    -- The enabled journeys whose triggers read what goes, or which write
    -- messages at all (to customers): left in place, every tick would fail
    -- on them.  (The error undoes the unbind.)
    SELECT array_agg(j.name ORDER BY j.name) INTO needed_by
      FROM automation.journey j
     WHERE j.enabled AND (unbind.kind = 'customers' OR NOT automation._trigger_ok(j));
    IF needed_by IS NOT NULL THEN
        RAISE EXCEPTION 'cannot unbind the shop''s %: enabled journeys need them', replace(kind, '_', ' ')
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = 'Needed by: ' || array_to_string(needed_by, ', ') || '.',
                  HINT = 'Disable them first with automation.set_journey_enabled(name, false), or drop them.';
    END IF;
    PERFORM automation._retype_keys();
    RETURN true;
END
$$;
COMMENT ON FUNCTION automation.unbind(text) IS 'remove the binding of one kind (orders, order_lines, customers, carts, cart_lines, products, signups)';

-- _binding_problem: why a stored binding no longer fits the shop's relation,
-- or NULL when it still does.  As the extension's owner: an analyst reads
-- the bindings (the view below) without access to the shop's schemas, in
-- which to_regclass would refuse to look.
CREATE FUNCTION automation._binding_problem(s automation.source)
RETURNS text
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel regclass := to_regclass(format('%I.%I', s.relation_schema, s.relation_name));
    role text;
    col text;
    now_type text;
BEGIN
    IF rel IS NULL THEN
        RETURN format('relation %I.%I does not exist', s.relation_schema, s.relation_name);
    END IF;
    FOR role, col IN SELECT * FROM jsonb_each_text(s.columns) LOOP
        SELECT format_type(a.atttypid, a.atttypmod) INTO now_type
          FROM pg_attribute a
         WHERE a.attrelid = rel AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
        IF now_type IS NULL THEN
            RETURN format('column %I of %s does not exist', col, rel);
        ELSIF now_type <> s.column_types ->> role THEN
            RETURN format('column %I of %s now has type %s, bound as %s', col, rel, now_type, s.column_types ->> role);
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION automation._binding_problem(automation.source) FROM PUBLIC;

-- _check_binding(s, detail): raises the binding's problem, for code that
-- reads the bound columns as the types they were bound with (the profile
-- pass in C takes their values as those types: a column since retyped would
-- be misread), and for the tick when a statement built from a binding failed
-- (detail: that statement's error).
CREATE FUNCTION automation._check_binding(s automation.source, detail text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    problem text := automation._binding_problem(s);
    hint text;
BEGIN
    IF problem IS NULL THEN
        RETURN;
    END IF;
    problem := format('the shop''s %s no longer fit their binding: %s', replace(s.kind, '_', ' '), problem);
    hint := format('Bind them again with automation.bind_%s(); automation.bindings shows every binding''s problem.', s.kind);
    IF detail IS NULL THEN
        RAISE EXCEPTION USING MESSAGE = problem, ERRCODE = 'object_not_in_prerequisite_state', HINT = hint;
    END IF;
    RAISE EXCEPTION USING MESSAGE = problem, ERRCODE = 'object_not_in_prerequisite_state', HINT = hint, DETAIL = detail;
END
$$;
REVOKE ALL ON FUNCTION automation._check_binding(automation.source, text) FROM PUBLIC;

-- _binding_order(kind): where a kind of binding stands among the others,
-- customers first: the order bindings are listed and checked in.
CREATE FUNCTION automation._binding_order(kind text)
RETURNS integer
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT array_position(ARRAY['customers', 'orders', 'order_lines', 'products', 'carts', 'cart_lines', 'signups'], kind) $$;

CREATE VIEW automation.bindings AS
SELECT s.kind,
       format('%I.%I', s.relation_schema, s.relation_name) AS relation,
       s.columns,
       s.keys ->> 'customer' AS customer_key_type,
       s.options,
       s.bound_by,
       s.bound_at,
       automation._binding_problem(s) AS problem
  FROM automation.source s
 ORDER BY automation._binding_order(s.kind);
COMMENT ON VIEW automation.bindings IS 'the shop''s relations as bound, and what no longer fits (problem)';

INSERT INTO automation.access_rule VALUES
    ('analyst', 'automation.bindings', 'SELECT'),
    ('analyst', 'FUNCTION automation.customer_key_type()', 'EXECUTE'),
    ('analyst', 'FUNCTION automation._binding_problem(automation.source)', 'EXECUTE'),
    ('analyst', 'FUNCTION automation._binding_order(text)', 'EXECUTE');
