-- Code of a role's own that the extension could run with its owner's
-- privileges: a cast of the role's own type to text, passed to a function
-- that runs as the owner; a segment predicate's function that defines a
-- segment while the tick evaluates it.
BEGIN;
SELECT plan(8);

CREATE SCHEMA xshop;
CREATE TABLE xshop.customers (id bigint PRIMARY KEY, email text, consent boolean);
CREATE TABLE xshop.orders (id bigint PRIMARY KEY, customer_id bigint, placed_at timestamptz, total numeric);
CREATE TABLE xshop.order_lines (order_id bigint, product_id text, quantity integer);
CREATE TABLE xshop.products (id text PRIMARY KEY, name text, category text);
INSERT INTO xshop.customers VALUES (1, 'ann@example.com', true), (2, 'ben@example.com', true);
INSERT INTO xshop.products VALUES ('mug', 'Mug', 'kitchen'), ('cup', 'Cup', 'kitchen');
INSERT INTO xshop.orders VALUES (1, 1, '2026-01-05 10:00+00', 20), (2, 2, '2026-01-06 10:00+00', 30);
INSERT INTO xshop.order_lines VALUES (1, 'mug', 1), (1, 'cup', 1), (2, 'mug', 1), (2, 'cup', 2);
SELECT automation.bind_customers('xshop.customers', 'id', 'email', 'consent');
SELECT automation.bind_orders('xshop.orders', 'customer_id', 'placed_at', 'total', order_id_column => 'id');
SELECT automation.bind_order_lines('xshop.order_lines', 'order_id', 'product_id', 'quantity');
SELECT automation.bind_products('xshop.products', 'id', 'name', 'category');
SELECT count(*) FROM automation.tick('2026-01-10 12:00+00');

CREATE ROLE regress_priv_analyst;
SELECT count(*) FROM automation.grant_access('regress_priv_analyst', 'analyst');
CREATE ROLE regress_priv_app;
GRANT USAGE ON SCHEMA automation TO regress_priv_app;
GRANT EXECUTE ON FUNCTION automation.enqueue(anyelement, text, text, jsonb, text, timestamptz, text, text, integer, text,
                                             timestamptz) TO regress_priv_app;
CREATE SCHEMA regress_priv AUTHORIZATION regress_priv_analyst;
GRANT USAGE ON SCHEMA regress_priv TO regress_priv_app;

-- A type of the role's own, and a cast of it to text that says whose
-- privileges it ran with.
SET ROLE regress_priv_analyst;
CREATE TYPE regress_priv.key AS (x integer);
CREATE FUNCTION regress_priv.key_text(regress_priv.key) RETURNS text LANGUAGE plpgsql
AS $$ BEGIN RAISE EXCEPTION 'the cast ran as %', current_user; END $$;
CREATE CAST (regress_priv.key AS text) WITH FUNCTION regress_priv.key_text(regress_priv.key);
SELECT throws_ok($$SELECT * FROM automation.explain_customer(ROW(1)::regress_priv.key)$$, '42804', NULL,
                 'explain_customer refuses a key of a type of the caller''s own before converting it');
SELECT throws_ok($$SELECT * FROM automation.related_products(ROW(1)::regress_priv.key)$$, '42804', NULL,
                 'so does related_products');
SELECT results_eq($$SELECT kind, problem FROM automation.bindings WHERE kind = 'customers'$$,
                  $$VALUES ('customers'::text, NULL::text)$$,
                  'an analyst reads the bindings and their problems, without access to the shop''s schema');
-- The functions the analyst role is granted work for it, without access
-- to the extension's own tables.
SELECT results_eq($$SELECT automation.customer_key_type(), automation.change_capture_enabled()$$,
                  $$VALUES ('bigint'::regtype, false)$$,
                  'an analyst asks for the customer key''s type and whether change capture is on');
SELECT lives_ok($$SELECT automation.define_segment('regress_priv_tagged', '''dog'' = ANY (automation.customer_tags(p.customer_key))');
                  SELECT count(*) FROM automation.replenishment_intervals$$,
                'an analyst defines a segment on the basket tags, and reads the learned intervals');
SET ROLE regress_priv_app;
SELECT throws_ok($$SELECT automation.enqueue(ROW(1)::regress_priv.key, 'email', 'x', '{}', 'k-1')$$, '42804', NULL,
                 'and enqueue, for the application');
RESET ROLE;
SELECT is((SELECT count(*) FROM automation.explain_customer(1::bigint)) >= 0, true, 'a key of a built-in type is taken');

-- A predicate's function that defines a segment as the session's user
-- (the tick's) while the predicate is evaluated: refused (and the function
-- says so by holding every customer).
SET ROLE regress_priv_analyst;
CREATE FUNCTION regress_priv.sneak(k bigint) RETURNS boolean LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    PERFORM automation._store_segment('regress_priv_sneaked', 'true', NULL, session_user);
    RETURN false;
EXCEPTION
    WHEN insufficient_privilege THEN RETURN true;
    WHEN OTHERS THEN RETURN false;
END
$$;
SELECT automation.define_segment('regress_priv_trojan', 'regress_priv.sneak(p.customer_key)');
RESET ROLE;
SELECT count(*) FROM automation.tick('2026-01-10 13:00+00');
SELECT is((SELECT count(*) FROM automation.segment_member WHERE segment = 'regress_priv_trojan' AND exited_at IS NULL),
          2::bigint, 'a segment cannot be defined from within a segment''s evaluation, as the tick''s role');

SELECT * FROM finish();
ROLLBACK;
