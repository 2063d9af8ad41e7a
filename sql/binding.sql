-- Binding the shop's tables: what a DBA sees, including every error.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = notice;

CREATE SCHEMA bshop;
CREATE TABLE bshop.customers (id bigint PRIMARY KEY, email text, consent boolean, first_name text,
                              tz text, phone varchar(20), consent_at timestamptz, pic bytea);
CREATE TABLE bshop.orders (id bigint PRIMARY KEY, customer_id bigint, placed timestamptz, total numeric(12,2),
                           status text, note text, placed_text text, cents integer, point point, tags bigint[]);
CREATE TABLE bshop.order_lines (order_id bigint, product_id bigint, qty integer, price numeric);
CREATE TABLE bshop.products (id bigint PRIMARY KEY, name text, category text, stock integer, days numeric);
CREATE TABLE bshop.carts (id bigint PRIMARY KEY, customer_id bigint, updated timestamp, total numeric,
                          order_id bigint, stage text);
CREATE TABLE bshop.cart_lines (cart_id bigint, product_id bigint, qty integer);
CREATE TABLE bshop.signups (customer_id bigint, at date);
CREATE VIEW bshop.paid_orders AS SELECT * FROM bshop.orders WHERE status = 'paid';
CREATE MATERIALIZED VIEW bshop.order_summary AS SELECT customer_id, max(placed) AS placed, sum(total) AS total FROM bshop.orders GROUP BY 1;
CREATE SEQUENCE bshop.seq;

-- the happy path: every kind, tables, views and materialized views
SELECT automation.bind_customers('bshop.customers', 'id', 'email', 'consent', first_name_column => 'first_name', timezone_column => 'tz', phone_column => 'phone');
SELECT automation.bind_orders('bshop.orders', 'customer_id', 'placed', 'total', order_id_column => 'id', status_column => 'status', counted_statuses => ARRAY['paid', 'shipped']);
SELECT automation.bind_order_lines('bshop.order_lines', 'order_id', 'product_id', 'qty', 'price');
SELECT automation.bind_products('bshop.products', 'id', 'name', 'category', 'stock', 'days');
SELECT automation.bind_carts('bshop.carts', 'id', 'customer_id', 'updated', 'total', 'order_id', 'stage');
SELECT automation.bind_cart_lines('bshop.cart_lines', 'cart_id', 'product_id', 'qty');
SELECT automation.bind_signups('bshop.signups', 'customer_id', 'at');
SELECT kind, relation, columns, customer_key_type, options, bound_by, problem FROM automation.bindings;
SELECT automation.customer_key_type();

-- re-binding replaces: a view, then a materialized view
SELECT automation.bind_orders('bshop.paid_orders', 'customer_id', 'placed', 'total');
SELECT kind, relation, columns, options FROM automation.bindings WHERE kind = 'orders';
SELECT automation.bind_orders('bshop.order_summary', 'customer_id', 'placed', 'total');
SELECT kind, relation, columns FROM automation.bindings WHERE kind = 'orders';

-- a relation or column that does not exist
SELECT automation.bind_orders('bshop.nope', 'customer_id', 'placed', 'total');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.bind_orders('bshop.orders', 'customer', 'placed', 'total');
\echo sqlstate :LAST_ERROR_SQLSTATE
-- not a table, view or materialized view
SELECT automation.bind_orders('bshop.seq', 'customer_id', 'placed', 'total');
\echo sqlstate :LAST_ERROR_SQLSTATE
-- the extension's own tables are not the shop's
SELECT automation.bind_orders('automation.source', 'kind', 'bound_at', 'kind');
\echo sqlstate :LAST_ERROR_SQLSTATE
-- columns of the wrong type
SELECT automation.bind_orders('bshop.orders', 'customer_id', 'placed_text', 'total');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.bind_orders('bshop.orders', 'customer_id', 'placed', 'note');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.bind_customers('bshop.customers', 'id', 'pic', 'consent');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.bind_customers('bshop.customers', 'id', 'email', 'first_name');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.bind_products('bshop.products', 'id', 'stock');
\echo sqlstate :LAST_ERROR_SQLSTATE
-- a key type without hashing
SELECT automation.bind_orders('bshop.orders', 'point', 'placed', 'total');
\echo sqlstate :LAST_ERROR_SQLSTATE
-- an array key: a key is one value
SELECT automation.bind_orders('bshop.orders', 'tags', 'placed', 'total');
\echo sqlstate :LAST_ERROR_SQLSTATE
-- counted statuses as a two-dimensional array
SELECT automation.bind_orders('bshop.orders', 'customer_id', 'placed', 'total', status_column => 'status',
                              counted_statuses => '{{paid}}');
\echo sqlstate :LAST_ERROR_SQLSTATE
-- a composite key: a key is one value
CREATE TYPE bshop.pair AS (a integer, b text);
CREATE VIEW bshop.pair_orders AS SELECT row(customer_id, 'x')::bshop.pair AS pair, placed, total FROM bshop.orders;
SELECT automation.bind_orders('bshop.pair_orders', 'pair', 'placed', 'total');
\echo sqlstate :LAST_ERROR_SQLSTATE
-- a fixed-length key: stored without its length, it would not fit
CREATE VIEW bshop.char_orders AS SELECT ('K' || customer_id)::char(12) AS code, placed, total FROM bshop.orders;
SELECT automation.bind_orders('bshop.char_orders', 'code', 'placed', 'total');
\echo sqlstate :LAST_ERROR_SQLSTATE
DROP VIEW bshop.pair_orders, bshop.char_orders;
DROP TYPE bshop.pair;
-- a key type that does not match the other bindings
SELECT automation.bind_signups('bshop.signups', 'at', 'at');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.bind_orders('bshop.orders', 'cents', 'placed', 'total');
\echo sqlstate :LAST_ERROR_SQLSTATE
-- NULL arguments
SELECT automation.bind_orders(NULL, 'customer_id', 'placed', 'total');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.bind_orders('bshop.orders', NULL, 'placed', 'total');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.bind_carts('bshop.carts', 'id', 'customer_id', 'updated', NULL);
\echo sqlstate :LAST_ERROR_SQLSTATE
-- statuses without a status column, or an empty list
SELECT automation.bind_orders('bshop.orders', 'customer_id', 'placed', 'total', counted_statuses => ARRAY['paid']);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.bind_orders('bshop.orders', 'customer_id', 'placed', 'total', status_column => 'status', counted_statuses => '{}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.bind_orders('bshop.orders', 'customer_id', 'placed', 'total', status_column => 'status', counted_statuses => ARRAY['paid', NULL]);
\echo sqlstate :LAST_ERROR_SQLSTATE
-- statuses an enum status does not have
CREATE TYPE bshop.order_state AS ENUM ('pending', 'paid', 'shipped');
CREATE TABLE bshop.enum_orders (id bigint, customer_id bigint, placed timestamptz, total numeric, state bshop.order_state);
SELECT automation.bind_orders('bshop.enum_orders', 'customer_id', 'placed', 'total', status_column => 'state',
                              counted_statuses => ARRAY['paid', 'Shipped', 'delivered']);
\echo sqlstate :LAST_ERROR_SQLSTATE
BEGIN;
SELECT automation.bind_orders('bshop.enum_orders', 'customer_id', 'placed', 'total', status_column => 'state',
                              counted_statuses => ARRAY['paid', 'shipped']);
SELECT relation, options FROM automation.bindings WHERE kind = 'orders';
ROLLBACK;
DROP TABLE bshop.enum_orders;
DROP TYPE bshop.order_state;
-- identifiers that try SQL injection are only names that do not exist
SELECT automation.bind_orders('bshop.orders; DROP TABLE bshop.orders', 'customer_id', 'placed', 'total');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.bind_orders('bshop.orders', 'customer_id"; DROP TABLE bshop.orders; --', 'placed', 'total');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.bind_orders('bshop.orders', 'customer_id', 'placed', 'total) FROM bshop.orders; DROP TABLE bshop.orders; --');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT count(*) AS orders_table_still_there FROM bshop.orders;
-- a failed re-binding leaves the previous binding as it was
SELECT kind, relation, columns FROM automation.bindings WHERE kind = 'orders';

-- a relation the caller cannot read
CREATE ROLE regress_binding_clerk;
GRANT USAGE ON SCHEMA automation, bshop TO regress_binding_clerk;
GRANT EXECUTE ON FUNCTION automation.bind_orders(regclass, name, name, name, name, name, text[], name, name, name),
      automation._bind(text, regclass, text[], name[], text[], boolean[], jsonb),
      automation._check_key_type(text, name, regtype), automation._retype_keys(),
      automation.customer_key_type() TO regress_binding_clerk;
GRANT SELECT, INSERT, UPDATE ON automation.source TO regress_binding_clerk;
GRANT SELECT (id, customer_id, placed) ON bshop.orders TO regress_binding_clerk;
SET ROLE regress_binding_clerk;
SELECT automation.bind_orders('bshop.orders', 'customer_id', 'placed', 'total');
\echo sqlstate :LAST_ERROR_SQLSTATE
RESET ROLE;

-- by default nobody but the installing superuser may bind
CREATE ROLE regress_binding_nobody;
GRANT USAGE ON SCHEMA automation, bshop TO regress_binding_nobody;
SET ROLE regress_binding_nobody;
SELECT automation.bind_orders('bshop.orders', 'customer_id', 'placed', 'total');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT * FROM automation.bindings;
\echo sqlstate :LAST_ERROR_SQLSTATE
RESET ROLE;

-- a binding whose relation changed under it says so
ALTER TABLE bshop.signups RENAME COLUMN at TO signed_up;
SELECT kind, problem FROM automation.bindings WHERE problem IS NOT NULL;
ALTER TABLE bshop.signups RENAME COLUMN signed_up TO at;

-- unbind
SELECT automation.unbind('signups');
SELECT automation.unbind('signups');
SELECT automation.unbind('everything');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.unbind(NULL);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT kind FROM automation.bindings;

-- settings are reserved and checked
SET automation.no_such_setting = 1;
\echo sqlstate :LAST_ERROR_SQLSTATE
SET automation.default_timezone = 'Mars/Olympus_Mons';
\echo sqlstate :LAST_ERROR_SQLSTATE
-- a zone SQL would read as an abbreviation without summer time; one it reads the same
SET automation.default_timezone = 'CET';
\echo sqlstate :LAST_ERROR_SQLSTATE
-- an offset with its sign: east of UTC for a customer, west for SQL
SET automation.default_timezone = '+03:00';
\echo sqlstate :LAST_ERROR_SQLSTATE
SET automation.default_timezone = '-5';
\echo sqlstate :LAST_ERROR_SQLSTATE
SET automation.default_timezone = 'Etc/GMT-3';
SHOW automation.default_timezone;
SET automation.default_timezone = 'EST';
SHOW automation.default_timezone;
SET automation.default_timezone = 'Europe/Helsinki';
SHOW automation.default_timezone;

-- clean up
SELECT automation.unbind(k) FROM unnest(ARRAY['orders', 'order_lines', 'customers', 'carts', 'cart_lines', 'products']) AS k;
REVOKE ALL ON SCHEMA automation, bshop FROM regress_binding_clerk, regress_binding_nobody;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA automation FROM regress_binding_clerk;
REVOKE ALL ON automation.source FROM regress_binding_clerk;
REVOKE ALL ON bshop.orders FROM regress_binding_clerk;
DROP ROLE regress_binding_clerk, regress_binding_nobody;
DROP SCHEMA bshop CASCADE;
