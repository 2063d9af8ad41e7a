-- Profiles and segments: what a DBA and an analyst see, including every error.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
SELECT count(automation.unbind(k)) >= 0 AS nothing_bound
  FROM unnest(ARRAY['orders', 'order_lines', 'customers', 'carts', 'cart_lines', 'products', 'signups']) AS k;
SET client_min_messages = notice;
SET automation.default_timezone = 'UTC';

-- nothing bound yet
SELECT automation.refresh_profiles();
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.refresh_segments();
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.enable_change_capture();
\echo sqlstate :LAST_ERROR_SQLSTATE

CREATE SCHEMA pshop;
CREATE TABLE pshop.customers (id integer PRIMARY KEY, email text, consent boolean, tz text);
CREATE TABLE pshop.orders (id integer, customer_id integer, placed_at timestamp, total numeric(8,2), status text);
CREATE VIEW pshop.orders_view AS SELECT * FROM pshop.orders;
CREATE SEQUENCE pshop.seq;
INSERT INTO pshop.customers VALUES (1, 'a@example.com', true, 'Asia/Tokyo'), (2, 'b@example.com', false, NULL);
INSERT INTO pshop.orders VALUES
    (1, 1, '2024-11-02 09:00', 25.00, 'paid'), (2, 1, '2024-12-02 10:00', 75.50, 'paid'),
    (3, 2, '2024-12-24 18:00', 520.00, 'paid'), (4, 2, '2024-12-25 18:00', 10.00, 'void'),
    (5, NULL, '2024-12-01 00:00', 1.00, 'paid'), (6, 2, '2024-12-01 00:00', -3.00, 'paid');
SELECT automation.bind_customers('pshop.customers', 'id', 'email', 'consent', timezone_column => 'tz');
SELECT automation.bind_orders('pshop.orders_view', 'customer_id', 'placed_at', 'total', order_id_column => 'id',
                              status_column => 'status', counted_statuses => ARRAY['paid']);

-- the first refresh is full, and says why; bad orders are skipped with a notice
SELECT automation.refresh_profiles(now => '2025-01-01 00:00+00');
SELECT * FROM automation.customer_profile ORDER BY customer_key;
SELECT full_refresh, reason, customers, orders_read, skipped_null_customer, skipped_null_time, skipped_bad_total
  FROM automation.profile_refresh ORDER BY refresh_id;
SELECT automation.refresh_profiles(NULL, NULL);
\echo sqlstate :LAST_ERROR_SQLSTATE

-- orders bound to a view: no change capture, refreshes stay full
SELECT automation.enable_change_capture();
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.change_capture_enabled();
SELECT automation.refresh_profiles(now => '2025-01-01 00:00+00');
-- one asked to be full says so
SELECT automation.refresh_profiles(now => '2025-01-01 00:00+00', "full" => true);
SELECT full_refresh, reason FROM automation.profile_refresh ORDER BY refresh_id DESC LIMIT 1;

-- built-in segments
SELECT automation.refresh_segments('2025-01-01 00:00+00');
SELECT name, members, entered, exited FROM automation.segment_sizes WHERE members > 0 OR NOT builtin;
SELECT * FROM automation.segment_members('vip');
SELECT name, description FROM automation.segment WHERE builtin ORDER BY name;

-- user segments: what is accepted
SELECT automation.define_segment('tokyo_regulars', $$order_count >= 2 AND timezone = 'Asia/Tokyo'$$, 'two orders or more, in Tokyo');
SELECT automation.define_segment('consenting_big_spenders', 'customer.consent AND p.total_spent > 50');
SELECT automation.refresh_segments('2025-01-02 00:00+00');
SELECT name, members, entered, exited FROM automation.segment_sizes WHERE NOT builtin;
SELECT * FROM automation.segment_members('tokyo_regulars');
-- a moment before the last refresh: refused, the members kept as they were
SELECT automation.refresh_segments('2025-01-01 12:00+00');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT name, members FROM automation.segment_sizes WHERE NOT builtin;

-- user segments: what is rejected
SELECT automation.define_segment('broken', 'total_spent >');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.define_segment('unknown_column', 'lifetime_value > 10');
\echo sqlstate :LAST_ERROR_SQLSTATE
-- (errors are placed in the predicate as written, not in the query around it)
SELECT automation.define_segment('typo', 'order_count >= 2 ANDD total_spent > 10');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.define_segment('bad_literal', 'order_count > ''many''');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.define_segment('not_boolean', 'total_spent * 2');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.define_segment('two_statements', 'true); DELETE FROM automation.segment; SELECT (true');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.define_segment('subquery', 'total_spent > (SELECT avg(total_spent) FROM automation.customer_profile)');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.define_segment('volatile', 'random() < 0.5');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.define_segment('other_relation', 'true) FROM pg_catalog.pg_authid --');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.define_segment('writes', 'pg_catalog.nextval(''pshop.seq'') > 0');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.define_segment('Big Spenders', 'total_spent > 100');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.define_segment('vip', 'total_spent > 100');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.define_segment('tokyo_regulars', 'true');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.define_segment('no_predicate', NULL);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.drop_segment('vip');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.drop_segment('nope');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT * FROM automation.segment_members('nope');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT name FROM automation.segment WHERE NOT builtin ORDER BY name;

-- dropping a segment drops its history
SELECT automation.drop_segment('tokyo_regulars');
SELECT count(*) FROM automation.segment_member WHERE segment = 'tokyo_regulars';

-- clean up
SELECT automation.drop_segment('consenting_big_spenders');
TRUNCATE automation.customer_profile, automation.segment_member, automation.profile_refresh;
UPDATE automation.segment SET refreshed_at = NULL;
SELECT automation.unbind(k) FROM unnest(ARRAY['orders', 'customers']) AS k;
-- a predicate on the customers, with none bound
SELECT automation.define_segment('consenting', 'customer.consent');
\echo sqlstate :LAST_ERROR_SQLSTATE
DROP SCHEMA pshop CASCADE;
RESET automation.default_timezone;
