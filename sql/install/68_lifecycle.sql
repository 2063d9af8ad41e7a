-- Lifecycle automations: what a customer bought, and when it runs out.
--
-- One pass over the bound orders and order lines (automation.refresh_lifecycle,
-- run by the tick's "lifecycle" stage once per automation.lifecycle_refresh)
-- learns for every product how long a unit lasts and records for every
-- customer and product what they bought, when, how regularly, and when it
-- will run out.  On that, and on the profiles, stand the lifecycle triggers
-- of the journey engine:
--
--   product_purchased  an order with given products or categories
--   replenishment      a consumable is about to run out
--   gift_order         an order that looks like a gift
--   birthday           a customer's birthday is coming (birth date bound)
--   quarter_start      a new quarter: last quarter's spend reached a tier
--   points_milestone   loyalty points crossed a milestone
--   tagged             a basket rule tagged the customer
--   campaign           a one-off send to a segment (schedule_campaign)
--
-- Basket rules tag customers by the categories they buy together; the tags
-- are usable in segments (automation.customer_tags) and step conditions.

-- What each customer bought of each product.
CREATE TABLE automation.customer_product (
    customer_key text NOT NULL,
    product text NOT NULL,
    purchases integer NOT NULL,
    first_purchase_at timestamptz NOT NULL,
    last_purchase_at timestamptz NOT NULL,
    last_quantity double precision NOT NULL,
    mean_gap_days double precision,
    gap_spread double precision,
    runs_out_at timestamptz,
    regular boolean NOT NULL,
    CONSTRAINT customer_product_pkey PRIMARY KEY (customer_key, product)
);
CREATE INDEX customer_product_runs_out_at_idx ON automation.customer_product (runs_out_at) WHERE runs_out_at IS NOT NULL;
COMMENT ON TABLE automation.customer_product IS 'per customer and product: purchases, the last one, the regularity of the gaps and when it runs out; written by automation.refresh_lifecycle()';
COMMENT ON COLUMN automation.customer_product.gap_spread IS 'coefficient of variation of the days between purchases (standard deviation / mean); NULL under three purchases';
COMMENT ON COLUMN automation.customer_product.runs_out_at IS 'last purchase + last quantity x days per unit, for products with a known interval';
COMMENT ON COLUMN automation.customer_product.regular IS 'bought at least three times at a regular interval (gap_spread at most automation.subscription_max_spread)';

-- How long one unit of each product lasts: configured and learned.
CREATE TABLE automation.product_interval (
    product text NOT NULL,
    name text,
    category text,
    configured_days double precision,
    learned_days double precision,
    observations bigint NOT NULL,
    spread double precision,
    days_per_unit double precision,
    source text NOT NULL,
    learned_at timestamptz NOT NULL,
    CONSTRAINT product_interval_pkey PRIMARY KEY (product),
    CONSTRAINT product_interval_source_check CHECK (source IN ('configured', 'learned', 'too_few_observations', 'irregular'))
);
COMMENT ON TABLE automation.product_interval IS 'days one unit of a product lasts: the bound consumption_days, else learned from repeat purchases';

CREATE VIEW automation.replenishment_intervals AS
SELECT product, name, category, configured_days, learned_days, observations, spread, days_per_unit, source, learned_at
  FROM automation.product_interval;
COMMENT ON VIEW automation.replenishment_intervals IS 'configured and learned days per unit of each product, with their evidence: repeat purchases observed and the spread of their gaps';
COMMENT ON COLUMN automation.replenishment_intervals.learned_days IS 'median over repeat purchases of (days since the previous purchase / units bought then)';
COMMENT ON COLUMN automation.replenishment_intervals.observations IS 'repeat purchases the learned interval rests on';
COMMENT ON COLUMN automation.replenishment_intervals.spread IS 'interquartile range of the observed days per unit / their median';
COMMENT ON COLUMN automation.replenishment_intervals.days_per_unit IS 'the interval reminders use: configured, else learned when observations reach automation.replenishment_min_observations and the spread is at most automation.replenishment_max_spread';
COMMENT ON COLUMN automation.replenishment_intervals.source IS 'configured, learned, too_few_observations or irregular (spread above automation.replenishment_max_spread: not a consumable)';

CREATE TABLE automation.lifecycle_refresh (
    refresh_id bigint GENERATED ALWAYS AS IDENTITY,
    as_of timestamptz NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    products bigint NOT NULL,
    customer_products bigint NOT NULL,
    duration interval NOT NULL,
    CONSTRAINT lifecycle_refresh_pkey PRIMARY KEY (refresh_id)
);
COMMENT ON TABLE automation.lifecycle_refresh IS 'log of lifecycle refreshes: intervals learned and customer-product rows written';

-- Basket rules and the tags they give.
CREATE TABLE automation.basket_rule (
    tag text NOT NULL,
    categories text[] NOT NULL,
    min_matches integer NOT NULL,
    description text,
    defined_at timestamptz NOT NULL DEFAULT now(),
    applied_at timestamptz,
    tagged_at timestamptz,
    CONSTRAINT basket_rule_pkey PRIMARY KEY (tag),
    CONSTRAINT basket_rule_tag_check CHECK (automation._is_word(tag, 63)),
    CONSTRAINT basket_rule_categories_check CHECK (cardinality(categories) > 0),
    CONSTRAINT basket_rule_min_matches_check CHECK (min_matches BETWEEN 1 AND cardinality(categories))
);
COMMENT ON TABLE automation.basket_rule IS 'basket rules: customers who bought from min_matches of the categories get the tag';
COMMENT ON COLUMN automation.basket_rule.tagged_at IS 'the tick at which the rule last gave a tag (the segments are evaluated again after it)';
SELECT pg_catalog.pg_extension_config_dump('automation.basket_rule', '');

CREATE TABLE automation.customer_tag (
    customer_key text NOT NULL,
    tag text NOT NULL,
    tagged_at timestamptz NOT NULL,
    CONSTRAINT customer_tag_pkey PRIMARY KEY (customer_key, tag),
    CONSTRAINT customer_tag_tag_fkey FOREIGN KEY (tag) REFERENCES automation.basket_rule (tag) ON DELETE CASCADE
);
CREATE INDEX customer_tag_tag_idx ON automation.customer_tag (tag, tagged_at);
COMMENT ON TABLE automation.customer_tag IS 'the tags basket rules gave customers, and when';
COMMENT ON COLUMN automation.customer_tag.tagged_at IS 'the customer''s last order when the rule tagged them: the purchase that made them match, as far as the profile tells';
SELECT pg_catalog.pg_extension_config_dump('automation.customer_tag', '');

-- (EXISTS rather than IN: evaluated for a few changed customers, as most
-- ticks do, it probes their products; IN would hash every regular purchase)
INSERT INTO automation.segment (name, predicate, description, builtin) VALUES
    ('subscription_candidate',
     'EXISTS (SELECT FROM automation.customer_product cp WHERE cp.customer_key = p.customer_key AND cp.regular)',
     'bought one product at least three times at a regular interval (gap spread at most automation.subscription_max_spread)', true);

-- _purchases_sql(needed_by, now): the query of every purchase as (customer,
-- product, at timestamptz, quantity float8): counted orders placed up to
-- now, one row per order line.
CREATE FUNCTION automation._purchases_sql(needed_by text, now timestamptz)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o automation.source := automation._src('orders', needed_by);
    l automation.source := automation._src('order_lines', needed_by);
BEGIN
    PERFORM automation._need_column(o, 'order_id', needed_by);
    -- Integer keys stay integers (the pass hashes them as they are), other
    -- keys are read as text.  Only lines that bought something count
    -- (automation._bought); one with no quantity recorded bought one unit.
    RETURN format($q$
        SELECT %1$s%11$s, %2$s%12$s, %3$s, coalesce(%4$s::float8, 1)
          FROM %5$s o JOIN %6$s l ON %7$s = %8$s
         WHERE %1$s IS NOT NULL AND %3$s <= %10$L::timestamptz AND %9$s AND %13$s$q$,
        automation._col(o, 'customer', 'o'), automation._col(l, 'product', 'l'), automation._ts(o, 'placed_at', 'o'),
        automation._col(l, 'quantity', 'l'), automation._rel(o), automation._rel(l),
        automation._col(l, 'order_id', 'l'), automation._col(o, 'order_id', 'o'), automation._counted(o, 'o'), now,
        CASE WHEN o.column_types ->> 'customer' IN ('bigint', 'integer', 'smallint') THEN '' ELSE '::text' END,
        CASE WHEN l.column_types ->> 'product' IN ('bigint', 'integer', 'smallint') THEN '' ELSE '::text' END,
        automation._bought(l, 'l'));
END
$$;

CREATE FUNCTION automation._lifecycle_pass(query text, bound_by name)
RETURNS TABLE (customer_key text, product text, purchases integer, first_at timestamptz, last_at timestamptz,
               last_quantity double precision, mean_gap double precision, sd_gap double precision,
               learned_days double precision, observations bigint, spread double precision)
LANGUAGE c
AS 'MODULE_PATHNAME', 'automation_lifecycle_pass';
REVOKE ALL ON FUNCTION automation._lifecycle_pass(text, name) FROM PUBLIC;

-- refresh_lifecycle(now): learns the days per unit of every product and
-- rewrites automation.customer_product, from the counted orders placed up
-- to now.  Returns the customer-product rows written.
CREATE FUNCTION automation.refresh_lifecycle(now timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p automation.source;
    min_obs integer;
    max_unit_spread float8;
    max_spread float8;
    started timestamptz := clock_timestamp();
    n_products bigint;
    n_rows bigint;
BEGIN
    IF now IS NULL THEN
        RAISE EXCEPTION 'now must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM automation._check_finite(now, 'now');
    PERFORM automation._load();
    PERFORM automation._retype_keys();
    min_obs := current_setting('automation.replenishment_min_observations')::integer;
    max_unit_spread := current_setting('automation.replenishment_max_spread')::float8;
    max_spread := current_setting('automation.subscription_max_spread')::float8;
    SELECT * INTO p FROM automation.source x WHERE x.kind = 'products';

    -- One statement: the pass gives per customer and product the purchases,
    -- the last one and the gaps between them, and per product (customer_key
    -- NULL) the days per unit observed; the days per unit -- the bound
    -- consumption_days, else the median observed when there are enough
    -- observations, consistent enough -- go to product_interval and give
    -- every customer and product its run-out moment.  customer_product is
    -- rewritten whole, its indexes built once at the end, which is cheaper
    -- than maintaining them row by row.
    DELETE FROM automation.product_interval;
    TRUNCATE automation.customer_product;
    ALTER TABLE automation.customer_product DROP CONSTRAINT customer_product_pkey;
    DROP INDEX automation.customer_product_runs_out_at_idx;
    EXECUTE format($q$
        WITH bought AS MATERIALIZED (
            SELECT * FROM automation._lifecycle_pass(%1$L, %2$L)),
        per_product AS (
            SELECT coalesce(c.product, l.product) AS product, c.name, c.category, c.configured_days, l.learned_days,
                   coalesce(l.observations, 0) AS observations, l.spread,
                   coalesce(c.configured_days, CASE WHEN l.observations >= $2 AND l.spread <= $3 THEN l.learned_days END) AS days_per_unit,
                   CASE WHEN c.configured_days IS NOT NULL THEN 'configured'
                        WHEN l.observations < $2 OR l.observations IS NULL THEN 'too_few_observations'
                        WHEN l.spread <= $3 THEN 'learned' ELSE 'irregular' END AS source
              FROM (SELECT b.product, b.learned_days, b.observations, b.spread FROM bought b WHERE b.customer_key IS NULL) l
              FULL JOIN (%3$s) c ON c.product = l.product),
        stored AS (
            INSERT INTO automation.product_interval (product, name, category, configured_days, learned_days, observations,
                                                     spread, days_per_unit, source, learned_at)
            SELECT i.*, $1 FROM per_product i)
        INSERT INTO automation.customer_product (customer_key, product, purchases, first_purchase_at, last_purchase_at,
                                                 last_quantity, mean_gap_days, gap_spread, runs_out_at, regular)
        SELECT b.customer_key::%4$s, b.product, b.purchases, b.first_at, b.last_at, b.last_quantity, b.mean_gap,
               CASE WHEN b.purchases >= 3 THEN b.sd_gap / nullif(b.mean_gap, 0) END,
               -- (none beyond a hundred years: a quantity or days entered wrong)
               CASE WHEN b.last_quantity * i.days_per_unit <= 36500
                    THEN b.last_at + make_interval(secs => b.last_quantity * i.days_per_unit * 86400) END,
               b.purchases >= 3 AND b.mean_gap > 0 AND b.sd_gap / b.mean_gap <= $4
          FROM bought b
          LEFT JOIN per_product i ON i.product = b.product AND i.days_per_unit IS NOT NULL
         WHERE b.customer_key IS NOT NULL$q$,
        automation._purchases_sql('automation.refresh_lifecycle()', now),
        (SELECT x.bound_by FROM automation.source x WHERE x.kind = 'orders'),
        CASE WHEN p.kind IS NULL THEN 'SELECT NULL::text AS product, NULL::text AS name, NULL::text AS category, NULL::float8 AS configured_days WHERE false'
             -- (one row per product: a view may repeat a key, or hold a NULL one)
             ELSE format('SELECT DISTINCT ON (1) %s::text AS product, %s::text AS name, %s AS category, %s AS configured_days '
                         'FROM %s p WHERE %1$s IS NOT NULL ORDER BY 1',
                         automation._col(p, 'product', 'p'), automation._col(p, 'name', 'p'),
                         coalesce(automation._col(p, 'category', 'p') || '::text', 'NULL::text'),
                         CASE WHEN p.columns ? 'consumption_days'
                              -- (NaN, infinity and more than a hundred years are no interval)
                              THEN format('CASE WHEN %1$s > 0 AND %1$s <= 36500 THEN %1$s::float8 END',
                                          automation._col(p, 'consumption_days', 'p'))
                              ELSE 'NULL::float8' END,
                         automation._rel(p)) END,
        automation.customer_key_type())
    USING now, min_obs, max_unit_spread, max_spread;
    GET DIAGNOSTICS n_rows = ROW_COUNT;
    ALTER TABLE automation.customer_product ADD CONSTRAINT customer_product_pkey PRIMARY KEY (customer_key, product);
    CREATE INDEX customer_product_runs_out_at_idx ON automation.customer_product (runs_out_at) WHERE runs_out_at IS NOT NULL;
    ANALYZE automation.customer_product;
    n_products := (SELECT count(*) FROM automation.product_interval);

    INSERT INTO automation.lifecycle_refresh (as_of, started_at, products, customer_products, duration)
    VALUES (now, started, n_products, n_rows, clock_timestamp() - started);
    RETURN n_rows;
END
$$;
COMMENT ON FUNCTION automation.refresh_lifecycle(timestamptz) IS 'learn replenishment intervals and rewrite automation.customer_product from the orders up to now; returns its rows';

-- Basket rules.
CREATE FUNCTION automation.define_basket_rule(tag text, categories text[], min_matches integer, description text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF tag IS NULL OR categories IS NULL OR min_matches IS NULL THEN
        RAISE EXCEPTION 'tag, categories and min_matches must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT automation._is_word(tag, 63) THEN
        RAISE EXCEPTION 'invalid tag "%"', tag
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A tag is a lower-case word: letters, digits and underscores.';
    END IF;
    IF array_ndims(categories) > 1 THEN
        RAISE EXCEPTION 'categories must be a one-dimensional array'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cardinality(categories) = 0 OR array_position(categories, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'a basket rule needs at least one category, and no NULL'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example ARRAY[''dog accessories'', ''puppy food''].';
    END IF;
    -- (a category named twice counts once)
    categories := ARRAY(SELECT DISTINCT c FROM unnest(categories) c ORDER BY 1);
    IF min_matches < 1 OR min_matches > cardinality(categories) THEN
        RAISE EXCEPTION 'min_matches must be between 1 and the number of categories (%)', cardinality(categories)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM automation._check_catalog(NULL, categories, format('basket rule %s', tag));
    INSERT INTO automation.basket_rule (tag, categories, min_matches, description)
    VALUES (tag, ARRAY(SELECT DISTINCT c FROM unnest(categories) c ORDER BY 1), min_matches, description)
    ON CONFLICT ON CONSTRAINT basket_rule_pkey DO UPDATE
       SET categories = excluded.categories, min_matches = excluded.min_matches,
           description = excluded.description, defined_at = now(), applied_at = NULL;
    RETURN tag;
END
$$;
COMMENT ON FUNCTION automation.define_basket_rule(text, text[], integer, text) IS 'tag customers who bought from at least min_matches of the categories; redefining a rule applies it again';

CREATE FUNCTION automation.drop_basket_rule(tag text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    users text;
BEGIN
    IF tag IS NULL THEN
        RAISE EXCEPTION 'tag must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- (a tagged journey on a rule gone would wait for ever)
    users := (SELECT string_agg(j.name, ', ' ORDER BY j.name) FROM automation.journey j
               WHERE j.trigger = 'tagged' AND j.trigger_options ->> 'tag' = drop_basket_rule.tag);
    IF users IS NOT NULL THEN
        RAISE EXCEPTION 'basket rule "%" triggers these journeys: %', tag, users
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Drop those journeys first with automation.drop_journey().';
    END IF;
    DELETE FROM automation.basket_rule r WHERE r.tag = drop_basket_rule.tag;
    IF NOT FOUND THEN
        RAISE NOTICE 'basket rule "%" does not exist', tag;
        RETURN false;
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION automation.drop_basket_rule(text) IS 'remove a basket rule and the tags it gave';

CREATE FUNCTION automation.customer_tags(customer_key anyelement)
RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(array_agg(t.tag ORDER BY t.tag), '{}') FROM automation.customer_tag t WHERE t.customer_key = $1 $$;
COMMENT ON FUNCTION automation.customer_tags(anyelement) IS 'the tags basket rules gave a customer (usable in segment predicates)';

-- customer_tags(text): the same for a key written as text, as an analyst
-- types it ('42', or '42' unadorned) whatever the shop's key type: compared
-- in its text form.  (With text keys, the cast is none, and the index on
-- the tags' keys serves.)
CREATE FUNCTION automation.customer_tags(customer_key text)
RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(array_agg(t.tag ORDER BY t.tag), '{}') FROM automation.customer_tag t WHERE t.customer_key::text = $1 $$;
COMMENT ON FUNCTION automation.customer_tags(text) IS 'the tags basket rules gave a customer, the key given as text';

-- _apply_basket_rules(now): tags the customers whose profiles changed since
-- each rule was last applied (every customer, for a new rule).  A tag's
-- moment is the customer's last order (up to now): the purchase that made
-- them match, as far as the profile tells.  The tick's moment it is not: a
-- new rule tags every customer who matched it over the years, and a tagged
-- journey's lookback would then keep none of that history out.
CREATE FUNCTION automation._apply_basket_rules(now timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    IF NOT EXISTS (SELECT FROM automation.basket_rule) THEN
        RETURN 0;
    END IF;
    -- A profile's refreshed_at is its refresh's as_of: when no refresh wrote
    -- a profile since every rule was applied, none can match (and the
    -- profiles need not be read).
    IF NOT EXISTS (SELECT FROM automation.basket_rule r WHERE r.applied_at IS NULL)
       AND NOT EXISTS (SELECT FROM automation.profile_refresh x
                        WHERE x.customers > 0 AND x.as_of > (SELECT min(r.applied_at) FROM automation.basket_rule r)) THEN
        RETURN 0;
    END IF;
    WITH tagged AS (
        INSERT INTO automation.customer_tag (customer_key, tag, tagged_at)
        SELECT p.customer_key, r.tag, least(p.last_order_at, now)
          FROM automation.basket_rule r
          JOIN automation.customer_profile p ON p.categories && r.categories
                                             AND p.refreshed_at > coalesce(r.applied_at, '-infinity')
         WHERE (SELECT count(*) FROM unnest(r.categories) c WHERE c = ANY (p.categories)) >= r.min_matches
        ON CONFLICT ON CONSTRAINT customer_tag_pkey DO NOTHING
        RETURNING customer_tag.tag),
    applied AS (
        UPDATE automation.basket_rule r
           SET applied_at = now,
               tagged_at = CASE WHEN r.tag IN (SELECT t.tag FROM tagged t) THEN now ELSE r.tagged_at END)
    SELECT count(*) INTO n FROM tagged;
    RETURN n;
END
$$;

-- _check_catalog(products, categories, what): every product and category
-- named must exist in the bound products.
CREATE FUNCTION automation._check_catalog(products text[], categories text[], what text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p automation.source := automation._src('products', what);
    missing text;
BEGIN
    IF cardinality(products) > 0 THEN
        EXECUTE format('SELECT x FROM unnest($1) x WHERE NOT EXISTS (SELECT FROM %s p WHERE %s::text = x) LIMIT 1',
                       automation._rel(p), automation._col(p, 'product', 'p'))
           INTO missing USING products;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION '% names an unknown product "%"', what, missing
                USING ERRCODE = 'undefined_object',
                      HINT = format('Products are named by their key in %s.', automation._rel(p));
        END IF;
    END IF;
    IF cardinality(categories) > 0 THEN
        IF NOT p.columns ? 'category' THEN
            RAISE EXCEPTION '% names categories, but the products'' category column is not bound', what
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Bind the products again with category_column => ''...''.';
        END IF;
        EXECUTE format('SELECT x FROM unnest($1) x WHERE NOT EXISTS (SELECT FROM %s p WHERE %s::text = x) LIMIT 1',
                       automation._rel(p), automation._col(p, 'category', 'p'))
           INTO missing USING categories;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION '% names an unknown category "%"', what, missing
                USING ERRCODE = 'undefined_object',
                      HINT = format('Categories are the values of %s in %s.', p.columns ->> 'category', automation._rel(p));
        END IF;
    END IF;
END
$$;

-- _text_array(value, what): a JSON array of strings as text[], or an error.
CREATE FUNCTION automation._text_array(value jsonb, what text)
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NULL THEN
        RETURN '{}';
    END IF;
    IF jsonb_typeof(value) <> 'array' OR EXISTS (SELECT FROM jsonb_array_elements(value) e WHERE jsonb_typeof(e) NOT IN ('string', 'number')) THEN
        RAISE EXCEPTION '% must be a JSON array of names', what
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN ARRAY(SELECT e FROM jsonb_array_elements_text(value) e);
END
$$;

-- _product_spec(value, what): {"products": [...], "categories": [...]},
-- checked against the bound products; returns it normalised.
CREATE FUNCTION automation._product_spec(value jsonb, what text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    products text[];
    categories text[];
BEGIN
    IF jsonb_typeof(value) IS DISTINCT FROM 'object'
       OR EXISTS (SELECT FROM jsonb_object_keys(value) k WHERE k NOT IN ('products', 'categories')) THEN
        RAISE EXCEPTION '% must be an object with "products" and/or "categories"', what
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example ''{"categories": ["coffee capsules"]}''.';
    END IF;
    products := automation._text_array(value -> 'products', what || ' products');
    categories := automation._text_array(value -> 'categories', what || ' categories');
    IF cardinality(products) + cardinality(categories) = 0 THEN
        RAISE EXCEPTION '% names no product and no category', what
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM automation._check_catalog(products, categories, what);
    RETURN jsonb_build_object('products', to_jsonb(products), 'categories', to_jsonb(categories));
END
$$;

-- _days_ok(v): whether an option is a number of days the tick can count
-- with: from 0 to 100 years, and none so small that it is no double.
CREATE FUNCTION automation._days_ok(v jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_typeof(v) = 'number'
           AND v::text::numeric BETWEEN 0 AND 36500
           AND (v::text::numeric = 0 OR v::text::numeric >= 0.000001)
$$;

-- _check_send_at(send_at): a campaign's moment within a hundred years of
-- now, as a step's wait is (a year 4713 BC would be written as AD, one near
-- the end of time overflows when read in a time zone).
CREATE FUNCTION automation._check_send_at(send_at timestamptz)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF send_at NOT BETWEEN pg_catalog.now() - interval '100 years' AND pg_catalog.now() + interval '100 years' THEN
        RAISE EXCEPTION 'send_at must lie within 100 years of now, not at %', send_at
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- _check_lifecycle_options(trigger, options): the options of the lifecycle
-- triggers, checked when the journey is created.
CREATE FUNCTION automation._check_lifecycle_options(trigger text, options jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    what text := format('trigger %s', trigger);
    v jsonb;
    prev jsonb;
    k text;
    last timestamptz;
    ends timestamptz;
BEGIN
    CASE trigger
    WHEN 'product_purchased' THEN
        PERFORM automation._product_spec(options - 'exit_if_bought' - 'recommend' - 'lookback', what);
        IF options ? 'exit_if_bought' THEN
            PERFORM automation._product_spec(options -> 'exit_if_bought', what || ' option exit_if_bought');
        END IF;
        IF options ? 'recommend' THEN
            PERFORM automation._product_spec(options -> 'recommend', what || ' option recommend');
        END IF;
    WHEN 'replenishment' THEN
        IF options ? 'lead_days' AND NOT automation._days_ok(options -> 'lead_days') THEN
            RAISE EXCEPTION 'lead_days must be a number of days from 0 to 36500'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF options ? 'lead_days_by' THEN
            IF jsonb_typeof(options -> 'lead_days_by') <> 'object' THEN
                RAISE EXCEPTION 'lead_days_by must be an object of product or category to days'
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'For example ''{"vitamins": 20}''.';
            END IF;
            FOR k, v IN SELECT * FROM jsonb_each(options -> 'lead_days_by') LOOP
                IF NOT automation._days_ok(v) THEN
                    RAISE EXCEPTION 'lead_days_by "%" must be a number of days from 0 to 36500', k
                        USING ERRCODE = 'invalid_parameter_value';
                END IF;
                BEGIN
                    PERFORM automation._check_catalog(ARRAY[k], NULL, 'lead_days_by');
                EXCEPTION WHEN undefined_object THEN
                    PERFORM automation._check_catalog(NULL, ARRAY[k], 'lead_days_by');
                END;
            END LOOP;
        END IF;
    WHEN 'gift_order' THEN
        PERFORM automation._check_catalog(NULL, automation._text_array(options -> 'gift_categories', 'gift_categories'),
                                          'gift_categories');
    WHEN 'birthday' THEN
        IF options ? 'days_before' AND (jsonb_typeof(options -> 'days_before') <> 'number'
                                        OR (options ->> 'days_before')::numeric NOT BETWEEN 0 AND 300
                                        OR (options ->> 'days_before')::numeric % 1 <> 0) THEN
            RAISE EXCEPTION 'days_before must be a whole number of days between 0 and 300'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    WHEN 'quarter_start' THEN
        IF jsonb_typeof(options -> 'tiers') IS DISTINCT FROM 'array' OR jsonb_array_length(options -> 'tiers') = 0 THEN
            RAISE EXCEPTION 'trigger quarter_start needs the option "tiers"'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'For example ''{"tiers": [{"spend": 500, "amount": 15}, {"spend": 750, "amount": 30}]}''.';
        END IF;
        FOR v IN SELECT * FROM jsonb_array_elements(options -> 'tiers') LOOP
            IF jsonb_typeof(v) <> 'object' OR jsonb_typeof(v -> 'spend') IS DISTINCT FROM 'number'
               OR jsonb_typeof(v -> 'amount') IS DISTINCT FROM 'number'
               OR (v ->> 'spend')::numeric <= 0 OR (v ->> 'amount')::numeric <= 0 THEN
                RAISE EXCEPTION 'a tier is {"spend": <positive number>, "amount": <positive number>}'
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = format('The tier was %s.', v);
            END IF;
            -- (a misspelt "ammount" beside a valid tier would be ignored)
            IF EXISTS (SELECT FROM jsonb_object_keys(v) x(key) WHERE x.key NOT IN ('spend', 'amount')) THEN
                RAISE EXCEPTION 'unknown key in tier %', v
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'A tier has "spend" and "amount", nothing else.';
            END IF;
            IF prev IS NOT NULL AND ((v ->> 'spend')::numeric <= (prev ->> 'spend')::numeric
                                     OR (v ->> 'amount')::numeric < (prev ->> 'amount')::numeric) THEN
                RAISE EXCEPTION 'tiers are out of order'
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = format('%s comes after %s.', v, prev),
                          HINT = 'List the tiers by rising spend, each with an amount at least the one before.';
            END IF;
            prev := v;
        END LOOP;
    WHEN 'points_milestone' THEN
        IF options ? 'milestones' THEN
            IF jsonb_typeof(options -> 'milestones') <> 'array' OR jsonb_array_length(options -> 'milestones') = 0
               OR EXISTS (SELECT FROM jsonb_array_elements(options -> 'milestones') e
                           WHERE jsonb_typeof(e) <> 'number' OR e::text::numeric <= 0) THEN
                RAISE EXCEPTION 'milestones must be a JSON array of positive numbers of points'
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'For example ''{"milestones": [500, 1000]}''.';
            END IF;
            IF EXISTS (SELECT FROM (SELECT e::text::numeric - lag(e::text::numeric) OVER (ORDER BY o) AS d
                                      FROM jsonb_array_elements(options -> 'milestones') WITH ORDINALITY x(e, o)) y
                        WHERE y.d <= 0) THEN
                RAISE EXCEPTION 'milestones are out of order'
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'List them rising, each once.';
            END IF;
        END IF;
    WHEN 'tagged' THEN
        IF options ->> 'tag' IS NULL THEN
            RAISE EXCEPTION 'trigger tagged needs the option "tag"'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'The tag a basket rule gives, e.g. ''{"tag": "new_dog"}''.';
        END IF;
        IF options ? 'recommend' THEN
            PERFORM automation._product_spec(options -> 'recommend', what || ' option recommend');
        END IF;
        IF NOT EXISTS (SELECT FROM automation.basket_rule r WHERE r.tag = options ->> 'tag') THEN
            RAISE EXCEPTION 'unknown tag "%"', options ->> 'tag'
                USING ERRCODE = 'undefined_object',
                      HINT = 'Define it first with automation.define_basket_rule(); the option "tag" names it.';
        END IF;
    WHEN 'campaign' THEN
        BEGIN
            PERFORM (options ->> 'send_at')::timestamptz, (options ->> 'local_time')::boolean;
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'invalid campaign option: %', SQLERRM
                USING ERRCODE = 'invalid_parameter_value';
        END;
        IF options ->> 'send_at' IS NULL THEN
            RAISE EXCEPTION 'trigger campaign needs the option "send_at"'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM automation._check_send_at((options ->> 'send_at')::timestamptz);
        -- Members are enrolled until the lookback after the latest zone
        -- reached send_at (see _trigger_sql); ticks never go back before
        -- the segments' last refresh.
        last := automation._clock();
        ends := (options ->> 'send_at')::timestamptz
                + CASE WHEN coalesce((options ->> 'local_time')::boolean, true) THEN interval '26 hours' ELSE interval '0' END
                + automation._lookback(jsonb_populate_record(NULL::automation.journey, jsonb_build_object('trigger_options', options)));
        IF ends <= last THEN
            RAISE EXCEPTION 'a campaign at % would never send: the engine''s clock is at % already', options ->> 'send_at', last
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Its members are enrolled from send_at until its lookback has passed, and ticks do not go back.',
                      HINT = 'Pass a send_at from now on (the default is now).';
        END IF;
    ELSE
        NULL;
    END CASE;
END
$$;

-- _trigger_mark(journey, now): the period a calendar trigger looks at
-- (NULL for the other triggers, which look every tick).
CREATE FUNCTION automation._trigger_mark(j automation.journey, now timestamptz)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE j.trigger
        WHEN 'birthday' THEN to_char(now AT TIME ZONE automation._setting('default_timezone', 'UTC'), 'YYYY-MM-DD')
        WHEN 'quarter_start' THEN to_char(now AT TIME ZONE automation._setting('default_timezone', 'UTC'), 'YYYY"Q"Q')
    END
$$;

-- _lifecycle_trigger_sql(journey): the new subjects of a lifecycle trigger,
-- as _trigger_sql returns them: (subject, customer_key, anchor_at, context)
-- for the tick's now as $1.  A context may carry "payload", merged into the
-- message, "products" and "categories" (step conditions see them),
-- "purchased_at" and "watch_products"/"watch_categories" (exit "bought").
CREATE FUNCTION automation._lifecycle_trigger_sql(j automation.journey)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o automation.source;
    l automation.source;
    p automation.source;
    c automation.source;
    what text := format('trigger %s of journey %s', j.trigger, j.name);
    lookback text := automation._lookback_sql(j);
    tz text := automation._setting('default_timezone', 'UTC');
    spec jsonb;
    watch jsonb;
    cat text;
BEGIN
    CASE j.trigger
    WHEN 'product_purchased', 'gift_order' THEN
        o := automation._src('orders', what);
        l := automation._src('order_lines', what);
        SELECT * INTO p FROM automation.source x WHERE x.kind = 'products';
        PERFORM automation._need_column(o, 'order_id', what);
        cat := CASE WHEN p.columns ? 'category' THEN automation._col(p, 'category', 'p') || '::text' ELSE 'NULL::text' END;
        IF j.trigger = 'product_purchased' THEN
            spec := j.trigger_options;
            watch := coalesce(j.trigger_options -> 'exit_if_bought', '{}');
        ELSE
            IF NOT (o.columns ? 'ship_to') AND NOT (j.trigger_options ? 'gift_categories') THEN
                RAISE EXCEPTION '% needs the orders'' ship_to and bill_to columns bound, or the option gift_categories', what
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          HINT = 'Bind the orders again with ship_to_column and bill_to_column, or give gift_categories, e.g. ''{"gift_categories": ["toys"]}''.';
            END IF;
            spec := jsonb_build_object('categories', coalesce(j.trigger_options -> 'gift_categories', '[]'));
            watch := '{}';
        END IF;
        RETURN format($q$
            SELECT %1$s, %2$s, %3$s,
                   jsonb_build_object('order_id', %4$s, 'order_total', %5$s, 'purchased_at', %3$s,
                                      'products', m.products, 'categories', m.categories,
                                      'watch_products', %6$L::jsonb, 'watch_categories', %7$L::jsonb%8$s)
              FROM %9$s o
             CROSS JOIN LATERAL (
                   SELECT array_agg(DISTINCT %10$s::text ORDER BY %10$s::text) AS products,
                          array_remove(array_agg(DISTINCT %11$s ORDER BY %11$s), NULL) AS categories,
                          bool_or(%10$s::text = ANY (%12$L::text[]) OR %11$s = ANY (%13$L::text[])) AS matched
                     FROM %14$s l %15$s
                    WHERE %16$s = %4$s) m
             WHERE %3$s <= $1 AND %3$s > $1 - %17$s AND %18$s AND %2$s IS NOT NULL AND (%19$s)$q$,
            CASE WHEN j.reentry = 'each_time' OR j.trigger = 'gift_order'
                 THEN format('''order:'' || %s::text', automation._col(o, 'order_id', 'o'))
                 ELSE format('''customer:'' || %s::text', automation._col(o, 'customer', 'o')) END,
            automation._col(o, 'customer', 'o'), automation._ts(o, 'placed_at', 'o'),
            automation._col(o, 'order_id', 'o'), automation._col(o, 'total', 'o'),
            coalesce(watch -> 'products', '[]'), coalesce(watch -> 'categories', '[]'),
            CASE WHEN j.trigger = 'gift_order' AND o.columns ? 'ship_to'
                 THEN format(', ''gift_reason'', CASE WHEN %s IS DISTINCT FROM %s THEN ''shipped_elsewhere'' ELSE ''gift_category'' END',
                             automation._col(o, 'ship_to', 'o'), automation._col(o, 'bill_to', 'o'))
                 WHEN j.trigger = 'gift_order' THEN ', ''gift_reason'', ''gift_category'''
                 ELSE '' END,
            automation._rel(o), automation._col(l, 'product', 'l'), CASE WHEN p.kind IS NULL THEN 'NULL::text' ELSE cat END,
            ARRAY(SELECT jsonb_array_elements_text(coalesce(spec -> 'products', '[]'))),
            ARRAY(SELECT jsonb_array_elements_text(coalesce(spec -> 'categories', '[]'))),
            automation._rel(l),
            CASE WHEN p.kind IS NULL THEN ''
                 ELSE format('LEFT JOIN %s p ON %s = %s', automation._rel(p), automation._col(p, 'product', 'p'),
                             automation._col(l, 'product', 'l')) END,
            automation._col(l, 'order_id', 'l'), lookback, automation._counted(o, 'o'),
            CASE WHEN j.trigger = 'gift_order' AND o.columns ? 'ship_to'
                 THEN format('m.matched OR (%1$s IS NOT NULL AND %2$s IS NOT NULL AND lower(btrim(%1$s::text)) <> lower(btrim(%2$s::text)))',
                             automation._col(o, 'ship_to', 'o'), automation._col(o, 'bill_to', 'o'))
                 ELSE 'm.matched' END);
    WHEN 'replenishment' THEN
        PERFORM automation._src('order_lines', what);
        -- Due: the last purchase + quantity x days per unit - lead days, but
        -- not before half the supply is used.  customer_product is indexed
        -- on the run-out moment, which lies within the lookback and the
        -- longest lead of the due ones.
        RETURN format($q$
            SELECT 'replenish:' || cp.customer_key::text || ':' || cp.product || ':' || extract(epoch FROM cp.last_purchase_at)::bigint,
                   cp.customer_key, d.due,
                   jsonb_build_object('product', cp.product, 'products', jsonb_build_array(cp.product),
                                      'categories', CASE WHEN i.category IS NULL THEN '[]'::jsonb ELSE jsonb_build_array(i.category) END,
                                      'purchased_at', cp.last_purchase_at,
                                      'watch_products', jsonb_build_array(cp.product), 'watch_categories', '[]'::jsonb,
                                      'payload', jsonb_build_object('replenish', jsonb_build_object(
                                          'product', cp.product, 'name', i.name, 'quantity', cp.last_quantity,
                                          'last_purchased_at', cp.last_purchase_at, 'runs_out_at', cp.runs_out_at,
                                          'days_per_unit', i.days_per_unit, 'interval_source', i.source)))
              FROM automation.customer_product cp
              JOIN automation.product_interval i ON i.product = cp.product
             CROSS JOIN LATERAL (SELECT coalesce((%1$L::jsonb ->> cp.product)::float8, (%1$L::jsonb ->> i.category)::float8,
                                                 %2$s::float8) AS lead) ld
             CROSS JOIN LATERAL (SELECT greatest(cp.runs_out_at - make_interval(secs => ld.lead * 86400),
                                                 cp.last_purchase_at + (cp.runs_out_at - cp.last_purchase_at) / 2) AS due) d
             WHERE cp.runs_out_at > $1 - %3$s AND cp.runs_out_at <= $1 + make_interval(days => %4$s)
               AND d.due <= $1 AND d.due > $1 - %3$s$q$,
            coalesce(j.trigger_options -> 'lead_days_by', '{}'), coalesce(j.trigger_options ->> 'lead_days', '7'), lookback,
            ceil(greatest(coalesce((j.trigger_options ->> 'lead_days')::numeric, 7),
                          coalesce((SELECT max(v::text::numeric) FROM jsonb_each(coalesce(j.trigger_options -> 'lead_days_by', '{}')) x(k, v)), 0)))::int);
    WHEN 'birthday' THEN
        c := automation._src('customers', what);
        PERFORM automation._need_column(c, 'birth_date', what);
        -- The birthday in the year now + days_before falls in, and in the
        -- year before (around new year), at midnight in the customer's own
        -- zone (the bound zone column, else the default).  The trigger
        -- looks once a day (in the default zone), and takes the birthdays
        -- whose moment comes within the day ahead as well: enrolled for
        -- later, a customer east of the default zone is not reached only
        -- after their day has half gone, nor one west of it a day early.
        RETURN format($q$
            SELECT 'birthday:' || %1$s::text || ':' || y.y, %1$s, b.at - make_interval(days => %2$s),
                   jsonb_build_object('birthday', b.day, 'payload', jsonb_build_object('birthday', b.day))
              FROM %3$s c
             CROSS JOIN LATERAL (SELECT DISTINCT extract(year FROM (x AT TIME ZONE %4$L))::int AS y
                                   FROM unnest(ARRAY[$1 + make_interval(days => %2$s + 1), $1 - %5$s + make_interval(days => %2$s)]) x) y
             CROSS JOIN LATERAL (SELECT make_date(y.y, extract(month FROM %6$s)::int, 1) + (extract(day FROM %6$s)::int - 1) AS day) d
             CROSS JOIN LATERAL (SELECT d.day AS day, automation._zoned(d.day::timestamp, %7$s) AS at) b
             WHERE %6$s IS NOT NULL
               AND b.at - make_interval(days => %2$s) <= $1 + interval '1 day' AND b.at - make_interval(days => %2$s) > $1 - %5$s$q$,
            automation._col(c, 'customer', 'c'), coalesce((j.trigger_options ->> 'days_before')::int, 7), automation._rel(c),
            tz, lookback, automation._col(c, 'birth_date', 'c'),
            CASE WHEN c.columns ? 'timezone'
                 THEN format('automation._zone_or((%s)::text, %L)',
                             automation._col(c, 'timezone', 'c'), tz)
                 ELSE quote_literal(tz) END);
    WHEN 'quarter_start' THEN
        o := automation._src('orders', what);
        -- Last quarter's counted spend per customer, the highest tier it
        -- reached, and a gift-card code unique to the customer and quarter.
        RETURN format($q$
            WITH q AS (SELECT (date_trunc('quarter', $1 AT TIME ZONE %1$L) AT TIME ZONE %1$L) AS starts,
                              ((date_trunc('quarter', $1 AT TIME ZONE %1$L) - interval '3 months') AT TIME ZONE %1$L) AS prev,
                              to_char(date_trunc('quarter', $1 AT TIME ZONE %1$L) - interval '3 months', 'YYYY"Q"Q') AS label),
                 tiers AS (SELECT (t ->> 'spend')::numeric AS spend, (t ->> 'amount')::numeric AS amount
                             FROM jsonb_array_elements(%2$L::jsonb) t)
            SELECT 'customer:' || s.customer_key::text || ':' || q.label, s.customer_key, q.starts,
                   jsonb_build_object('quarter', q.label, 'spend', s.spend,
                                      'payload', jsonb_build_object('quarter', q.label, 'spend', s.spend, 'tier_spend', t.spend,
                                          'gift_card', jsonb_build_object('amount', t.amount,
                                              'code', 'VIP-' || q.label || '-' || upper(substr(md5(%3$L || ':' || s.customer_key::text || ':' || q.label), 1, 16)))))
              FROM q
              JOIN (SELECT %4$s AS customer_key, sum(%5$s) AS spend, min(q.starts) AS starts
                      FROM %6$s o, q
                     WHERE %7$s >= q.prev AND %7$s < q.starts AND %8$s AND %4$s IS NOT NULL
                     GROUP BY 1) s ON true
             CROSS JOIN LATERAL (SELECT tiers.spend, tiers.amount FROM tiers WHERE tiers.spend <= s.spend
                                  ORDER BY tiers.spend DESC LIMIT 1) t$q$,
            tz, j.trigger_options -> 'tiers', j.name, automation._col(o, 'customer', 'o'), automation._col(o, 'total', 'o'),
            automation._rel(o), automation._ts(o, 'placed_at', 'o'), automation._counted(o, 'o'));
    WHEN 'points_milestone' THEN
        -- Crossed within the lookback: the points before the orders of the
        -- lookback were under the milestone, the points now are not.  Read
        -- from the recent orders (the bound time column's index) first.
        o := automation._src('orders', what);
        RETURN format($q$
            SELECT 'customer:' || p.customer_key::text || ':points:' || m.m, p.customer_key, p.last_order_at,
                   jsonb_build_object('points', p.loyalty_points, 'milestone', m.m,
                                      'payload', jsonb_build_object('points', p.loyalty_points, 'milestone', m.m))
              FROM (SELECT %3$s AS customer_key, sum(%4$s) AS recent FROM %5$s o
                     WHERE %6$s > $1 - %2$s AND %6$s <= $1 AND %7$s AND %3$s IS NOT NULL
                     GROUP BY 1) r
              JOIN automation.customer_profile p ON p.customer_key = r.customer_key
              JOIN (SELECT e::text::numeric AS m FROM jsonb_array_elements(%1$L::jsonb) e) m ON p.loyalty_points >= m.m
             WHERE floor((p.total_spent - r.recent) * %8$s) < m.m$q$,
            coalesce(j.trigger_options -> 'milestones', '[500]'), lookback, automation._col(o, 'customer', 'o'),
            automation._col(o, 'total', 'o'), automation._rel(o), automation._ts(o, 'placed_at', 'o'),
            automation._counted(o, 'o'), automation._setting('points_per_unit', '1')::float8::numeric);
    WHEN 'tagged' THEN
        RETURN format($q$
            SELECT 'customer:' || t.customer_key::text || ':tag:' || t.tag, t.customer_key, t.tagged_at,
                   jsonb_build_object('tag', t.tag, 'payload', jsonb_build_object('tag', t.tag))
              FROM automation.customer_tag t
             WHERE t.tag = %1$L AND t.tagged_at <= $1 AND t.tagged_at > $1 - %2$s$q$,
            j.trigger_options ->> 'tag', lookback);
    WHEN 'campaign' THEN
        -- send_at read as a wall-clock time in the default zone; with
        -- local_time each member gets it at that clock time in their own
        -- zone (the bound customers' zone column, else the default -- also
        -- for a member without orders, who has no profile).  Members are
        -- enrolled from the moment the earliest zone reaches it until a
        -- lookback after the latest zone passed it.
        RETURN format($q$
            SELECT 'customer:' || m.customer_key::text, m.customer_key, a.at,
                   jsonb_build_object('campaign', %1$L, 'segment', m.segment)
              FROM automation.segment_member m
              LEFT JOIN (%7$s) z ON z.customer_key = m.customer_key
             CROSS JOIN LATERAL (SELECT CASE WHEN %2$s THEN automation._zoned(automation._local(%3$L::timestamptz, %4$L),
                                                           automation._zone_or(z.timezone, %4$L))
                                             ELSE %3$L::timestamptz END AS at) a
             WHERE m.segment = %5$L AND m.exited_at IS NULL
               AND $1 >= %3$L::timestamptz - CASE WHEN %2$s THEN interval '26 hours' ELSE interval '0' END
               AND $1 < %3$L::timestamptz + CASE WHEN %2$s THEN interval '26 hours' ELSE interval '0' END + %6$s$q$,
            j.name, CASE WHEN coalesce((j.trigger_options ->> 'local_time')::boolean, true) THEN 'true' ELSE 'false' END,
            j.trigger_options ->> 'send_at', tz,
            j.trigger_options ->> 'segment', lookback,
            CASE WHEN EXISTS (SELECT FROM automation.source s WHERE s.kind = 'customers' AND s.columns ? 'timezone')
                 THEN format('SELECT c.customer_key, c.timezone FROM (%s) c', automation._customers_sql())
                 ELSE 'SELECT p.customer_key, p.timezone FROM automation.customer_profile p' END);
    END CASE;
END
$$;

-- Analysts read the purchase patterns, the learned intervals, the basket
-- rules and the tags (and may use customer_tags() in segment predicates,
-- which run as them).
INSERT INTO automation.access_rule VALUES
    ('analyst', 'automation.customer_product', 'SELECT'),
    ('analyst', 'automation.replenishment_intervals', 'SELECT'),
    ('analyst', 'automation.basket_rule', 'SELECT'),
    ('analyst', 'automation.customer_tag', 'SELECT'),
    ('analyst', 'FUNCTION automation.customer_tags(anyelement)', 'EXECUTE'),
    ('analyst', 'FUNCTION automation.customer_tags(text)', 'EXECUTE');

-- schedule_campaign: a one-off send of a template to the members of a
-- segment at send_at -- with local_time, at that clock time in each
-- customer's own zone; with at_preferred_hour, at their preferred hour on
-- or after it.  A campaign is a marketing journey: consent, caps, quiet
-- hours and holdout apply, and its results are in journey_stats.
CREATE FUNCTION automation.schedule_campaign(name text, segment text, template text, payload jsonb DEFAULT '{}',
                                             send_at timestamptz DEFAULT now(), local_time boolean DEFAULT true,
                                             at_preferred_hour boolean DEFAULT false, channel text DEFAULT 'email',
                                             holdout_percent numeric DEFAULT 0)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j text;
BEGIN
    IF name IS NULL OR segment IS NULL OR template IS NULL OR send_at IS NULL OR local_time IS NULL
       OR at_preferred_hour IS NULL OR channel IS NULL OR holdout_percent IS NULL THEN
        RAISE EXCEPTION 'name, segment, template, send_at, local_time, at_preferred_hour, channel and holdout_percent must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM automation._check_finite(send_at, 'send_at');
    PERFORM automation._check_send_at(send_at);
    j := automation.create_journey(name, 'campaign',
                                   jsonb_build_object('segment', segment,
                                                      'send_at', to_char(send_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00"'),
                                                      'local_time', local_time),
                                   holdout_percent => holdout_percent,
                                   description => format('campaign to the segment %s at %s%s', segment, send_at,
                                                         CASE WHEN local_time THEN ' (customers'' local time)' ELSE '' END));
    PERFORM automation.add_step(j, interval '0', template, channel => channel, payload => coalesce(payload, '{}'),
                                at_preferred_hour => at_preferred_hour, valid_for => interval '2 days');
    UPDATE automation.journey x SET preset = 'campaign' WHERE x.name = j;
    RETURN j;
END
$$;
COMMENT ON FUNCTION automation.schedule_campaign(text, text, text, jsonb, timestamptz, boolean, boolean, text, numeric) IS 'send a template once to the members of a segment at send_at (in each customer''s local time by default)';

-- _tick_lifecycle(now): the tick's stage: refreshes the lifecycle tables
-- when older than automation.lifecycle_refresh, and applies the basket
-- rules to the customers whose profiles changed.
CREATE FUNCTION automation._tick_lifecycle(now timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    refresh integer;
    last timestamptz := (SELECT max(r.as_of) FROM automation.lifecycle_refresh r);
    n bigint := 0;
BEGIN
    PERFORM automation._load();
    -- in minutes (the setting as shown carries its unit: "1d", "90min")
    refresh := extract(epoch FROM current_setting('automation.lifecycle_refresh')::interval) / 60;
    IF refresh > 0
       AND (SELECT count(*) FROM automation.source x WHERE x.kind IN ('orders', 'order_lines')) = 2
       AND (SELECT x.columns ? 'order_id' FROM automation.source x WHERE x.kind = 'orders')
       AND (last IS NULL OR last <= now - make_interval(mins => refresh) OR last > now) THEN
        -- The refresh rewrites customer_product and rebuilds its indexes,
        -- which waits for every reader: one left open (an analyst's) would
        -- hold the tick, and every tick after it.  The refresh waits for the
        -- next tick instead; the rows stay as they are meanwhile.
        IF automation._try_lock('automation.customer_product', 'ACCESS EXCLUSIVE') THEN
            n := automation.refresh_lifecycle(now);
        ELSE
            RAISE WARNING 'the purchase patterns were not refreshed: another transaction is using automation.customer_product'
                USING DETAIL = 'See pg_locks; the next tick tries again.';
        END IF;
    END IF;
    RETURN n + automation._apply_basket_rules(now);
END
$$;

INSERT INTO automation.tick_stage VALUES (27, 'lifecycle', 'automation._tick_lifecycle');
