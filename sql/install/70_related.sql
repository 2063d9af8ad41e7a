-- Related products: "customers who bought this also bought".
--
-- automation.refresh_related_products() reads every counted order line of
-- the bound orders in one pass in C (src/related.c), builds each customer's
-- basket of distinct products, and keeps for every product the 20 products
-- (automation._related_keep()) most often bought by the same customers,
-- scored so that best-sellers do not win everything:
--
--     score = c_xy / sqrt(n_x * n_y) * c_xy / (c_xy + 5)
--
-- n_x: customers who bought x; c_xy: customers who bought both x and y.
-- The first factor is the cosine of the two products' buyer sets, the
-- second shrinks pairs seen by few customers toward 0.  Pairs bought
-- together by fewer than automation.related_min_customers customers are
-- left out, and a customer's basket holds at most the 100 distinct
-- products they bought most recently (automation._related_basket_cap()).  automation.related_products() and
-- automation._related_for() read the stored result; the tick computes it
-- again once it is older than automation.related_refresh_interval.

CREATE TABLE automation.related_product (
    product text NOT NULL,
    related text NOT NULL,
    score double precision NOT NULL,
    customers bigint NOT NULL,
    computed_at timestamptz NOT NULL,
    CONSTRAINT related_product_pkey PRIMARY KEY (product, related),
    CONSTRAINT related_product_distinct_check CHECK (product <> related),
    CONSTRAINT related_product_score_check CHECK (score > 0 AND score <= 1),
    CONSTRAINT related_product_customers_check CHECK (customers > 0)
);
COMMENT ON TABLE automation.related_product IS 'for every product, the products most often bought by the same customers; written by automation.refresh_related_products()';
COMMENT ON COLUMN automation.related_product.product IS 'the product''s key as text';
COMMENT ON COLUMN automation.related_product.score IS 'c_xy / sqrt(n_x * n_y) * c_xy / (c_xy + 5): the cosine of the two buyer sets, shrunk when few customers bought both';
COMMENT ON COLUMN automation.related_product.customers IS 'customers who bought both products (c_xy)';

-- One row per refresh: what it read and wrote.
CREATE TABLE automation.related_refresh (
    refresh_id bigint GENERATED ALWAYS AS IDENTITY,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    as_of timestamptz NOT NULL,
    lines_read bigint NOT NULL,
    customers bigint NOT NULL,
    capped_customers bigint NOT NULL,
    products bigint NOT NULL,
    pairs bigint NOT NULL,
    rows_written bigint NOT NULL,
    duration interval NOT NULL,
    CONSTRAINT related_refresh_pkey PRIMARY KEY (refresh_id)
);
COMMENT ON TABLE automation.related_refresh IS 'log of related-product refreshes: order lines read, customers and products seen, rows written';
COMMENT ON COLUMN automation.related_refresh.capped_customers IS 'customers who bought more distinct products than the basket cap (100): only their 100 most recent count';
COMMENT ON COLUMN automation.related_refresh.pairs IS 'pairs of products bought together by at least one customer';

CREATE FUNCTION automation._related_pass(lines_query text, now timestamptz, k integer, min_customers integer,
                                         basket_cap integer, shrink double precision, bound_by name)
RETURNS TABLE (product text, related text, score double precision, customers bigint)
LANGUAGE c
AS 'MODULE_PATHNAME', 'automation_related_pass';

CREATE FUNCTION automation._related_pass_counts(OUT lines_read bigint, OUT customers bigint, OUT capped_customers bigint,
                                                OUT products bigint, OUT pairs bigint)
RETURNS record
LANGUAGE c STRICT
AS 'MODULE_PATHNAME', 'automation_related_pass_counts';

-- The related products kept per product (related_products() returns at
-- most this many) and the most distinct products of one customer that count.
CREATE FUNCTION automation._related_keep()
RETURNS integer
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT 20 $$;

CREATE FUNCTION automation._related_basket_cap()
RETURNS integer
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT 100 $$;

-- _related_query(needed_by): the query the pass reads, built from the
-- bindings with quoted identifiers: (customer, product as text, placed at)
-- for every line with a product and a positive (or NULL) quantity of a
-- counted order with a customer, placed up to $1.  Timestamps without time
-- zone and dates are taken in automation.default_timezone, as for profiles.
CREATE FUNCTION automation._related_query(needed_by text, OUT query text, OUT bound_by name)
RETURNS record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o automation.source := automation._src('orders', needed_by);
    l automation.source := automation._src('order_lines', needed_by);
    placed text;
    tz text := automation._setting('default_timezone', 'UTC');
BEGIN
    IF NOT o.columns ? 'order_id' THEN
        RAISE EXCEPTION '% needs the orders'' order id bound', needed_by
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Order lines are joined to their orders by the order id.',
                  HINT = 'Bind the orders again with automation.bind_orders(..., order_id_column => ...).';
    END IF;
    placed := automation._col(o, 'placed_at', 'o');
    IF o.column_types ->> 'placed_at' LIKE 'timestamp without%' THEN
        placed := format('(%s AT TIME ZONE %L)', placed, tz);
    ELSIF o.column_types ->> 'placed_at' = 'date' THEN
        placed := format('(%s::timestamp AT TIME ZONE %L)', placed, tz);
    END IF;
    query := format('SELECT %1$s, (%2$s)::text, %3$s FROM %4$s o JOIN %5$s l ON %6$s = %7$s '
                    'WHERE %8$s AND %1$s IS NOT NULL AND %2$s IS NOT NULL AND %3$s <= $1 '
                    'AND %9$s',
                    automation._col(o, 'customer', 'o'), automation._col(l, 'product', 'l'), placed,
                    automation._rel(o), automation._rel(l),
                    automation._col(l, 'order_id', 'l'), automation._col(o, 'order_id', 'o'),
                    automation._counted(o, 'o'), automation._bought(l, 'l'));
    bound_by := o.bound_by;
END
$$;
REVOKE ALL ON FUNCTION automation._related_query(text) FROM PUBLIC;

-- refresh_related_products(now): computes the related products again from
-- the orders placed up to now and returns the rows written.  Readers see
-- the previous result until the refresh commits; two refreshes never run
-- at once (the second waits).
CREATE FUNCTION automation.refresh_related_products(now timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q record;
    counts record;
    written bigint;
    started timestamptz := clock_timestamp();
BEGIN
    IF now IS NULL THEN
        RAISE EXCEPTION 'now must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM automation._check_finite(now, 'now');
    PERFORM automation._load();
    SELECT * INTO q FROM automation._related_query('automation.refresh_related_products()');

    LOCK TABLE automation.related_product IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM automation.related_product;
    INSERT INTO automation.related_product (product, related, score, customers, computed_at)
    SELECT r.product, r.related, r.score, r.customers, now
      FROM automation._related_pass(q.query, now, automation._related_keep(),
                                    automation._setting('related_min_customers', '2')::integer,
                                    automation._related_basket_cap(), 5.0, q.bound_by) r;
    GET DIAGNOSTICS written = ROW_COUNT;

    SELECT * INTO counts FROM automation._related_pass_counts();
    INSERT INTO automation.related_refresh (as_of, lines_read, customers, capped_customers, products, pairs,
                                            rows_written, duration)
    VALUES (now, counts.lines_read, counts.customers, counts.capped_customers, counts.products, counts.pairs,
            written, clock_timestamp() - started);
    RETURN written;
END
$$;
COMMENT ON FUNCTION automation.refresh_related_products(timestamptz) IS 'compute the related products again from the counted orders placed up to now; returns the rows written';

-- _related_name_sql(related): an expression for the bound name of the
-- product whose key (as text) is the expression related, or NULL::text
-- when no products are bound or the role that bound them may no longer
-- read them.  It only builds text.
CREATE FUNCTION automation._related_name_sql(related text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p automation.source;
    rel regclass;
BEGIN
    SELECT * INTO p FROM automation.source s WHERE s.kind = 'products';
    IF NOT FOUND THEN
        RETURN 'NULL::text';
    END IF;
    rel := to_regclass(automation._rel(p));
    IF rel IS NULL OR NOT has_column_privilege(p.bound_by, rel, p.columns ->> 'product', 'SELECT')
       OR NOT has_column_privilege(p.bound_by, rel, p.columns ->> 'name', 'SELECT') THEN
        RETURN 'NULL::text';
    END IF;
    RETURN format('(SELECT (%s)::text FROM %s p WHERE %s = (%s)::%s LIMIT 1)',
                  automation._col(p, 'name', 'p'), rel, automation._col(p, 'product', 'p'),
                  related, p.column_types ->> 'product');
END
$$;
REVOKE ALL ON FUNCTION automation._related_name_sql(text) FROM PUBLIC;

-- related_products(product, n): the n products most related to one
-- product, best first, with their names when products are bound.  Reads
-- the stored result; an error says so when it has never been computed.
-- It runs as the extension's owner, and reads the shop's products only
-- as far as the role that bound them may.
CREATE FUNCTION automation.related_products(product anyelement, n integer DEFAULT 5)
RETURNS TABLE (related text, name text, score double precision, customers bigint)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key text;
    p automation.source;
    known boolean;
    stored text;
BEGIN
    IF product IS NULL OR n IS NULL THEN
        RAISE EXCEPTION 'product and n must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM automation._check_key_type(pg_typeof(product),
                                       (SELECT to_regtype(s.column_types ->> 'product') FROM automation.source s
                                         WHERE s.kind = 'products'), 'product');
    key := product::text;
    IF n < 1 THEN
        RAISE EXCEPTION 'n must be at least 1, not %', n
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('At most %s related products are kept per product.', automation._related_keep());
    END IF;
    PERFORM automation._src('orders', 'automation.related_products()');
    PERFORM automation._src('order_lines', 'automation.related_products()');

    SELECT * INTO p FROM automation.source s WHERE s.kind = 'products';
    IF FOUND AND to_regclass(automation._rel(p)) IS NOT NULL
       AND has_column_privilege(p.bound_by, automation._rel(p), p.columns ->> 'product', 'SELECT') THEN
        -- The key as the products write it (' 19' is product 19), as the
        -- related products are stored.
        BEGIN
            EXECUTE format('SELECT %1$s::text FROM %2$s p WHERE %1$s = $1::%3$s LIMIT 1',
                           automation._col(p, 'product', 'p'), automation._rel(p), p.column_types ->> 'product')
               INTO stored USING key;
        EXCEPTION WHEN data_exception THEN
            stored := NULL;     -- not even a value of the products' key type
        END;
        known := stored IS NOT NULL;
        key := coalesce(stored, key);
        IF NOT known THEN
            RAISE EXCEPTION 'product % is not in the bound products', key
                USING ERRCODE = 'undefined_object',
                      DETAIL = format('The products are bound to %s.', automation._rel(p));
        END IF;
    END IF;

    IF NOT EXISTS (SELECT FROM automation.related_refresh) THEN
        RAISE EXCEPTION 'related products have not been computed yet'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Run automation.refresh_related_products(), or wait for the next tick to compute them.';
    END IF;

    RETURN QUERY EXECUTE format(
        'SELECT r.related, %s, r.score, r.customers FROM automation.related_product r '
        'WHERE r.product = $1 ORDER BY r.score DESC, r.related LIMIT $2',
        automation._related_name_sql('r.related'))
      USING key, n;
END
$$;
COMMENT ON FUNCTION automation.related_products(anyelement, integer) IS 'the n products most often bought by the customers who bought this one, best first (customers who bought this also bought)';

-- _related_for(products, n, exclude): for message payloads, up to n
-- products related to any of the given ones (each with its best score
-- over them), leaving out the given products and those in exclude, as a
-- JSON array of {"product", "name", "score"}, best first.  An empty array
-- when there is nothing to suggest, also before the first refresh.
CREATE FUNCTION automation._related_for(products text[], n integer, exclude text[] DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result jsonb;
BEGIN
    IF products IS NULL OR n IS NULL OR n < 1 THEN
        RETURN '[]';
    END IF;
    EXECUTE format(
        'SELECT coalesce(jsonb_agg(jsonb_build_object(''product'', x.related, ''name'', %s, ''score'', x.score) '
        '                          ORDER BY x.score DESC, x.related), ''[]'') '
        '  FROM (SELECT r.related, max(r.score) AS score FROM automation.related_product r '
        '         WHERE r.product = ANY ($1) AND NOT r.related = ANY ($1) AND NOT r.related = ANY ($2) '
        '         GROUP BY r.related ORDER BY 2 DESC, 1 LIMIT $3) x',
        automation._related_name_sql('x.related'))
      INTO result
      USING array_remove(products, NULL), array_remove(coalesce(exclude, '{}'), NULL), n;
    RETURN result;
END
$$;
REVOKE ALL ON FUNCTION automation._related_for(text[], integer, text[]) FROM PUBLIC;

-- _tick_related(now): the tick's stage: computes the related products again
-- when the last refresh is automation.related_refresh_interval old (0:
-- never).  Does nothing, and returns 0, while orders or order lines are not
-- bound or the orders have no order id to join the lines by.
CREATE FUNCTION automation._tick_related(now timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    refresh interval := automation._setting('related_refresh_interval', '1d')::interval;
BEGIN
    IF NOT EXISTS (SELECT FROM automation.source s WHERE s.kind = 'orders' AND s.columns ? 'order_id')
       OR NOT EXISTS (SELECT FROM automation.source s WHERE s.kind = 'order_lines') THEN
        RETURN 0;
    END IF;
    IF refresh <= interval '0' THEN
        RETURN 0;
    END IF;
    IF (SELECT max(r.as_of) FROM automation.related_refresh r) > now - refresh THEN
        RETURN 0;
    END IF;
    RETURN automation.refresh_related_products(now);
END
$$;

-- After the predictions, before the journeys that may suggest related
-- products in their messages.
INSERT INTO automation.tick_stage VALUES (26, 'related_products', 'automation._tick_related');

INSERT INTO automation.access_rule VALUES
    ('analyst', 'automation.related_product', 'SELECT'),
    ('analyst', 'automation.related_refresh', 'SELECT'),
    ('analyst', 'FUNCTION automation.related_products(anyelement, integer)', 'EXECUTE');
