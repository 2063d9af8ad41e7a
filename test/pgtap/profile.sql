-- Profiles and segments on hand-built shops, with exact expected values:
-- counted statuses, skipped bad orders, time zones, the 90-day and
-- previous-quarter windows at their boundaries, RFM quintiles with ties,
-- incremental refresh equal to a full one, keys of type uuid and text, and
-- segment membership history.
BEGIN;
SELECT plan(90);

SET LOCAL automation.default_timezone = 'UTC';

-- A: four customers around the quarter boundary of 2025-04-01 (UTC).
CREATE SCHEMA pa;
CREATE TABLE pa.customers (id bigint PRIMARY KEY, email text, consent boolean, tz text);
CREATE TABLE pa.orders (id bigint, customer_id bigint, placed_at timestamptz, total numeric(10,2), status text);
CREATE TABLE pa.signups (customer_id bigint, signed_up_at timestamptz);
INSERT INTO pa.customers VALUES
    (1, 'one@example.com', true, 'Europe/Helsinki'), (2, 'two@example.com', false, NULL),
    (4, 'four@example.com', false, NULL), (5, 'five@example.com', false, 'Not/AZone');
INSERT INTO pa.orders VALUES
    (1, 1, '2024-06-10 14:30+00', 10.00, 'paid'),       -- 17:30 in Helsinki (summer time)
    (2, 1, '2024-12-10 16:15+00', 20.00, 'shipped'),    -- 18:15
    (3, 1, '2025-02-10 17:45+00', 30.00, 'paid'),       -- 19:45
    (4, 1, '2025-03-01 16:30+00', 40.00, 'delivered'),  -- 18:30
    (5, 2, '2024-12-31 23:30+00', 50.00, 'paid'),       -- just before the previous quarter
    (6, 2, '2025-01-01 00:00+00', 500.00, 'paid'),      -- its first instant; exactly 90 days before now
    (7, 2, '2025-02-01 00:00+00', 1000.00, 'cancelled'),
    (8, 3, '2025-01-15 00:00+00', 99.00, 'refunded'),
    (9, 4, '2025-03-31 12:00+00', 800.00, 'paid'),
    (10, 4, NULL, 5.00, 'paid'),
    (11, 4, '2025-03-01 00:00+00', NULL, 'paid'),
    (12, 4, '2025-03-01 00:00+00', -1.00, 'paid'),
    (13, NULL, '2025-03-01 00:00+00', 5.00, 'paid'),
    (14, 6, '2025-05-01 00:00+00', 5.00, 'paid'),       -- after now: not yet
    (15, 5, '2025-03-10 09:00+00', 1.00, 'paid');
INSERT INTO pa.signups VALUES (1, '2024-01-01'), (7, '2025-02-01');

SELECT throws_ok($$SELECT automation.refresh_profiles()$$, '55000', 'no orders are bound',
                 'a refresh with nothing bound says what to bind');

SELECT automation.bind_customers('pa.customers', 'id', 'email', 'consent', timezone_column => 'tz');
SELECT automation.bind_orders('pa.orders', 'customer_id', 'placed_at', 'total', order_id_column => 'id',
                              status_column => 'status', counted_statuses => ARRAY['paid', 'shipped', 'delivered']);
SELECT automation.bind_signups('pa.signups', 'customer_id', 'signed_up_at');

SELECT is(automation.refresh_profiles(now => '2025-04-01 00:00+00'), 4::bigint,
          'the first refresh is full and writes one profile per customer with a counted order');
SELECT col_type_is('automation', 'customer_profile', 'customer_key', 'bigint', 'profiles are keyed by the shop''s type');
SELECT set_eq($$SELECT customer_key FROM automation.customer_profile$$, ARRAY[1, 2, 4, 5]::bigint[],
              'refunded-only, future-only and NULL customers get no profile');
SELECT results_eq(
    $$SELECT orders_read, skipped_null_customer, skipped_null_time, skipped_bad_total, full_refresh
        FROM automation.profile_refresh ORDER BY refresh_id DESC LIMIT 1$$,
    $$VALUES (8::bigint, 1::bigint, 1::bigint, 2::bigint, true)$$,
    'bad orders are skipped and counted: NULL customer, NULL time, NULL and negative totals');

SELECT results_eq(
    $$SELECT order_count, total_spent, first_order_at, last_order_at, spent_90d, spent_365d, spent_prev_quarter,
             preferred_hour, timezone, lifecycle_stage, vip_tier, loyalty_points
        FROM automation.customer_profile WHERE customer_key = 1$$,
    $$VALUES (4, 100.00::numeric, '2024-06-10 14:30+00'::timestamptz, '2025-03-01 16:30+00'::timestamptz,
              70.00::numeric, 100.00::numeric, 70.00::numeric, 18::smallint, 'Europe/Helsinki', 'loyal', NULL::text, 100::bigint)$$,
    'customer 1: counted statuses, exact sums, windows, preferred hour in Helsinki time');
SELECT is((SELECT round(mean_gap_days::numeric, 6) FROM automation.customer_profile WHERE customer_key = 1),
          round(extract(epoch FROM timestamptz '2025-03-01 16:30+00' - timestamptz '2024-06-10 14:30+00') / 86400 / 3, 6),
          'mean gap in days');
SELECT is((SELECT round(gap_stddev_days::numeric, 6) FROM automation.customer_profile WHERE customer_key = 1),
          (SELECT round(stddev_pop(g)::numeric, 6) FROM (VALUES
              (extract(epoch FROM timestamptz '2024-12-10 16:15+00' - timestamptz '2024-06-10 14:30+00') / 86400),
              (extract(epoch FROM timestamptz '2025-02-10 17:45+00' - timestamptz '2024-12-10 16:15+00') / 86400),
              (extract(epoch FROM timestamptz '2025-03-01 16:30+00' - timestamptz '2025-02-10 17:45+00') / 86400)) v(g)),
          'spread of the gaps (population standard deviation)');
SELECT results_eq(
    $$SELECT order_count, total_spent, spent_90d, spent_prev_quarter, preferred_hour, lifecycle_stage, vip_tier
        FROM automation.customer_profile WHERE customer_key = 2$$,
    $$VALUES (2, 550.00::numeric, 0.00::numeric, 500.00::numeric, 0::smallint, 'lapsing', 'vip')$$,
    'customer 2: the 90 days exclude their first instant, the quarter includes it; cancelled orders do not count');
SELECT results_eq(
    $$SELECT total_spent, vip_tier, lifecycle_stage, mean_gap_days FROM automation.customer_profile WHERE customer_key = 4$$,
    $$VALUES (800.00::numeric, 'gold', 'new', NULL::float8)$$,
    'customer 4: gold VIP from one good order among bad ones');
SELECT results_eq(
    $$SELECT timezone, preferred_hour FROM automation.customer_profile WHERE customer_key = 5$$,
    $$VALUES ('UTC', 9::smallint)$$, 'an unknown time zone name falls back to automation.default_timezone');
-- An offset as ISO 8601 writes it is east of UTC when positive (as POSIX,
-- and AT TIME ZONE, would have it, "+03:00" is three hours behind).
UPDATE pa.customers SET tz = '+03:00' WHERE id = 5;
SELECT automation.refresh_profiles(true, '2025-04-01 00:00+00');
SELECT results_eq(
    $$SELECT timezone, preferred_hour FROM automation.customer_profile WHERE customer_key = 5$$,
    $$VALUES ('<+03>-03', 12::smallint)$$,
    'a customer in "+03:00" who orders at 09:00 UTC prefers 12:00; the zone is kept as POSIX writes it, which SQL reads right');
UPDATE pa.customers SET tz = '-0530' WHERE id = 5;
SELECT automation.refresh_profiles(true, '2025-04-01 00:00+00');
SELECT results_eq(
    $$SELECT timezone, preferred_hour FROM automation.customer_profile WHERE customer_key = 5$$,
    $$VALUES ('<-05:30>+05:30', 3::smallint)$$, 'and one in "-0530" 03:00 (03:30)');
UPDATE pa.customers SET tz = 'Not/AZone' WHERE id = 5;
SELECT automation.refresh_profiles(true, '2025-04-01 00:00+00');
SELECT results_eq(
    $$SELECT customer_key, r_score::int FROM automation.customer_profile ORDER BY last_order_at$$,
    $$VALUES (2::bigint, 1), (1, 2), (5, 3), (4, 4)$$,
    'R scores: one more for each quintile threshold the last order is after');

CREATE TEMP TABLE a_scored AS SELECT * FROM automation.customer_profile;
UPDATE automation.customer_profile SET lifecycle_stage = 'loyal', vip_tier = NULL, r_score = NULL;
SELECT is(automation._rescore('2025-04-01 00:00+00'), 4::bigint, 'set-based rescoring of lifecycle and tiers');
SELECT is_empty($$SELECT * FROM automation.customer_profile EXCEPT SELECT * FROM a_scored$$,
                'agrees with the pass, lapsing included');

-- Quarters follow automation.default_timezone: in Helsinki the previous
-- quarter began on 2024-12-31 22:00 UTC and ended on 2025-03-31 21:00 UTC.
SET LOCAL automation.default_timezone = 'Europe/Helsinki';
SELECT automation.refresh_profiles(true, '2025-04-01 00:00+00');
SELECT results_eq(
    $$SELECT customer_key, spent_prev_quarter, preferred_hour::int, timezone FROM automation.customer_profile ORDER BY 1$$,
    $$VALUES (1::bigint, 70.00::numeric, 18, 'Europe/Helsinki'), (2, 550.00, 1, 'Europe/Helsinki'),
             (4, 800.00, 15, 'Europe/Helsinki'), (5, 1.00, 11, 'Europe/Helsinki')$$,
    'the previous quarter and preferred hours in the default time zone');
SET LOCAL automation.default_timezone = 'UTC';
SELECT automation.refresh_profiles(true, '2025-04-01 00:00+00');

-- Settings change the derived columns.
SET LOCAL automation.points_per_unit = 2.5;
SET LOCAL automation.vip_threshold = 50;
SELECT automation.refresh_profiles(true, '2025-04-01 00:00+00');
SELECT results_eq($$SELECT loyalty_points, vip_tier FROM automation.customer_profile WHERE customer_key = 1$$,
                  $$VALUES (250::bigint, 'vip')$$, 'points per unit and the VIP threshold are settings');
RESET automation.points_per_unit;
RESET automation.vip_threshold;
SELECT automation.refresh_profiles(true, '2025-04-01 00:00+00');

-- Segments.
SELECT automation.define_segment('helsinki_spenders', $$total_spent > 50 AND timezone = 'Europe/Helsinki'$$, 'spent over 50, in Helsinki');
SELECT automation.define_segment('consented', 'customer.consent');
SELECT ok(automation.refresh_segments('2025-04-01 00:00+00') > 0, 'refresh_segments records entries');
SELECT set_eq($$SELECT customer_key FROM automation.segment_members('new')$$, ARRAY[4, 5]::bigint[], 'new: exactly one order');
SELECT set_eq($$SELECT customer_key FROM automation.segment_members('returning')$$, ARRAY[2]::bigint[], 'returning: two orders');
SELECT set_eq($$SELECT customer_key FROM automation.segment_members('loyal')$$, ARRAY[1]::bigint[], 'loyal: three or more');
SELECT set_eq($$SELECT customer_key FROM automation.segment_members('vip')$$, ARRAY[2, 4]::bigint[], 'vip: previous quarter 500 or more');
SELECT set_eq($$SELECT customer_key FROM automation.segment_members('vip_gold')$$, ARRAY[4]::bigint[], 'vip_gold: 750 or more');
SELECT set_eq($$SELECT customer_key FROM automation.segment_members('lapsing')$$, ARRAY[2]::bigint[],
              'lapsing: longer than twice their own gap and at least 30 days');
SELECT is_empty($$SELECT customer_key FROM automation.segment_members('lost')$$, 'lost: nobody quiet for a year');
SELECT set_eq($$SELECT customer_key FROM automation.segment_members('newsletter_only')$$, ARRAY[7]::bigint[],
              'newsletter_only: signed up, never ordered');
SELECT set_eq($$SELECT customer_key FROM automation.segment_members('helsinki_spenders')$$, ARRAY[1]::bigint[],
              'a user segment over profile columns');
SELECT set_eq($$SELECT customer_key FROM automation.segment_members('consented')$$, ARRAY[1]::bigint[],
              'a user segment over the bound customers'' columns');
SELECT is((SELECT pg_typeof(customer_key)::text FROM automation.segment_members('new') LIMIT 1), 'bigint',
          'segment_members returns keys of the shop''s type');

-- Customer 4's order is refunded: they leave vip and vip_gold, and history keeps when.
UPDATE pa.orders SET status = 'refunded' WHERE id = 9;
SELECT automation.refresh_profiles(true, '2025-04-02 00:00+00');
SELECT automation.refresh_segments('2025-04-02 00:00+00');
SELECT is_empty($$SELECT customer_key FROM automation.segment_members('vip_gold')$$, 'the customer left vip_gold');
SELECT results_eq($$SELECT entered_at, exited_at FROM automation.segment_member WHERE segment = 'vip_gold' AND customer_key = 4$$,
                  $$VALUES ('2025-04-01 00:00+00'::timestamptz, '2025-04-02 00:00+00'::timestamptz)$$,
                  'membership history: entered and exited');
SELECT results_eq($$SELECT members, entered, exited FROM automation.segment_sizes WHERE name = 'vip_gold'$$,
                  $$VALUES (0::bigint, 0::bigint, 1::bigint)$$, 'segment_sizes counts the exit of the last refresh');
SELECT results_eq($$SELECT members, entered, exited FROM automation.segment_sizes WHERE name = 'loyal'$$,
                  $$VALUES (1::bigint, 0::bigint, 0::bigint)$$, 'and the members who stayed');

-- Predicates run with the privileges of the role that defined them.
CREATE ROLE regress_segment_definer;
SELECT automation.grant_access('regress_segment_definer', 'analyst');
SET LOCAL ROLE regress_segment_definer;
SELECT throws_ok($$SELECT automation.define_segment('by_email', 'customer.email LIKE ''%@example.com''')$$, '42P01', NULL,
                 'a definer who cannot read the customers does not get them');
SELECT lives_ok($$SELECT automation.define_segment('big_orders', 'total_spent >= 100')$$, 'a predicate over the profile');
RESET ROLE;
REVOKE SELECT ON automation.customer_profile FROM regress_segment_definer;
SET LOCAL client_min_messages = error;
SELECT automation.refresh_segments('2025-04-03 00:00+00');
RESET client_min_messages;
SELECT results_eq($$SELECT name, refreshed_at FROM automation.segment WHERE name IN ('big_orders', 'loyal') ORDER BY name$$,
                  $$VALUES ('big_orders', NULL::timestamptz), ('loyal', '2025-04-03 00:00+00')$$,
                  'it is evaluated as its definer, who can no longer read profiles, not as the superuser calling');
SELECT automation.drop_segment('big_orders');
-- A function of the definer's that a predicate calls runs as them, and what
-- it changes in the session's settings is undone: it never reaches the
-- session that evaluates the segments (the tick's).
GRANT SELECT ON automation.customer_profile TO regress_segment_definer;
CREATE SCHEMA regress_definer AUTHORIZATION regress_segment_definer;
SET LOCAL ROLE regress_segment_definer;
CREATE FUNCTION regress_definer.meddle(k text) RETURNS boolean LANGUAGE plpgsql STABLE
AS $f$ BEGIN PERFORM set_config('automation.max_per_week', '0', false); RETURN true; END $f$;
SELECT lives_ok($$SELECT automation.define_segment('meddlers', 'regress_definer.meddle(p.customer_key::text)')$$,
                'a predicate that calls a stable function of the definer''s');
SELECT throws_ok($$SELECT automation._store_segment('coin', 'random() < 0.5', NULL, 'regress_segment_definer')$$, '22023', NULL,
                 'the store, called directly, checks the predicate as define_segment does');
SELECT throws_ok($$SELECT automation._store_segment('Bad Name', 'true', NULL, 'regress_segment_definer')$$, '42602', NULL,
                 'and the name');
SELECT throws_ok($$SELECT automation._store_segment('vip', 'true', NULL, 'regress_segment_definer')$$, '42710',
                 'segment "vip" already exists', 'and that no segment has it already');
RESET ROLE;
SELECT ok(automation.refresh_segments('2025-04-03 00:00+00') > 0, 'the superuser evaluates it');
SELECT is(current_setting('automation.max_per_week'), '3', 'and the setting the function changed is as it was');
SELECT automation.drop_segment('meddlers');
-- A definer's function that raises query_canceled or fails an assertion
-- (which PL/pgSQL's WHEN OTHERS does not catch) fails its own segment
-- only, as any other error does.
SET LOCAL ROLE regress_segment_definer;
CREATE FUNCTION regress_definer.cancel(k text) RETURNS boolean LANGUAGE plpgsql STABLE
AS $f$ BEGIN RAISE EXCEPTION 'gotcha' USING ERRCODE = 'query_canceled'; END $f$;
CREATE FUNCTION regress_definer.assert(k text) RETURNS boolean LANGUAGE plpgsql STABLE
AS $f$ BEGIN ASSERT k IS NULL; RETURN true; END $f$;
CREATE FUNCTION regress_definer.fine(k text) RETURNS boolean LANGUAGE sql STABLE AS $f$ SELECT true $f$;
SELECT automation.define_segment('cancels', 'regress_definer.fine(p.customer_key::text)');
SELECT automation.define_segment('asserts', 'regress_definer.fine(p.customer_key::text)');
RESET ROLE;
SELECT automation.refresh_segments('2025-04-03 00:00+00');
CREATE TEMP TABLE kept AS SELECT segment, customer_key FROM automation.segment_member WHERE segment IN ('cancels', 'asserts') AND exited_at IS NULL;
SET LOCAL ROLE regress_segment_definer;
CREATE OR REPLACE FUNCTION regress_definer.fine(k text) RETURNS boolean LANGUAGE sql STABLE AS $f$ SELECT regress_definer.cancel(k) $f$;
RESET ROLE;
UPDATE automation.segment SET predicate = replace(predicate, 'regress_definer.fine', 'regress_definer.assert') WHERE name = 'asserts';
SET LOCAL client_min_messages = error;
SELECT lives_ok($$SELECT automation.refresh_segments('2025-04-03 00:00+00')$$,
                'segments whose predicates raise query_canceled and assert_failure do not fail the refresh');
RESET client_min_messages;
SELECT set_eq($$SELECT segment, customer_key FROM automation.segment_member WHERE segment IN ('cancels', 'asserts') AND exited_at IS NULL$$,
              $$SELECT * FROM kept$$, 'they keep their members');
SELECT automation.drop_segment('cancels');
SELECT automation.drop_segment('asserts');
-- A predicate that calls a function which does not return (it waits for a
-- lock, or sleeps) fails its own segment once it has run longer than
-- automation.segment_timeout; it does not hold the refresh, nor with it the
-- tick.  (The statement timeout is a guard: without the segment's, the
-- refresh would sleep for an hour.)
SET LOCAL ROLE regress_segment_definer;
CREATE FUNCTION regress_definer.slow(k text) RETURNS boolean LANGUAGE sql STABLE AS $f$ SELECT true $f$;
SELECT automation.define_segment('sleepers', 'regress_definer.slow(p.customer_key::text)');
RESET ROLE;
SELECT automation.refresh_segments('2025-04-03 00:00+00');
SET LOCAL ROLE regress_segment_definer;
CREATE OR REPLACE FUNCTION regress_definer.slow(k text) RETURNS boolean LANGUAGE plpgsql STABLE
AS $f$ BEGIN PERFORM pg_sleep(3600); RETURN true; END $f$;
RESET ROLE;
SET LOCAL automation.segment_timeout = '200ms';
SET LOCAL statement_timeout = '30s';
SET LOCAL client_min_messages = error;
SELECT lives_ok($$SELECT automation.refresh_segments('2025-04-03 01:00+00')$$,
                'a segment whose predicate sleeps past automation.segment_timeout does not hold the refresh');
RESET client_min_messages;
SET LOCAL statement_timeout = 0;
SELECT results_eq($$SELECT name, refreshed_at FROM automation.segment WHERE name IN ('sleepers', 'loyal') ORDER BY name$$,
                  $$VALUES ('loyal', '2025-04-03 01:00+00'::timestamptz), ('sleepers', '2025-04-03 00:00+00')$$,
                  'it alone is left as it was; the others are refreshed');
SELECT automation.drop_segment('sleepers');
RESET automation.segment_timeout;

-- B: RFM quintiles with a tie.  Customer 100 + i has n_i orders of 10 x i
-- each, the last one 11 - i days before now; customers 102 and 103 both
-- have two orders.
CREATE SCHEMA pb;
CREATE TABLE pb.orders (id bigint GENERATED ALWAYS AS IDENTITY, customer_id bigint, placed_at timestamptz, total numeric, status text);
INSERT INTO pb.orders (customer_id, placed_at, total, status)
SELECT 100 + i, timestamptz '2025-04-01 00:00+00' - make_interval(days => 11 - i::int) - make_interval(days => 7 * k), 10 * i, 'paid'
  FROM unnest(ARRAY[1, 2, 2, 4, 5, 6, 7, 8, 9, 10]) WITH ORDINALITY AS c(n, i), generate_series(0, n - 1) k;
SELECT automation.unbind('signups');
SELECT automation.unbind('customers');
SELECT automation.bind_orders('pb.orders', 'customer_id', 'placed_at', 'total', order_id_column => 'id',
                              status_column => 'status', counted_statuses => ARRAY['paid']);
SELECT is(automation.refresh_profiles(true, '2025-04-01 00:00+00'), 10::bigint, 'ten profiles');
SELECT results_eq(
    $$SELECT customer_key, order_count, total_spent, r_score::int, f_score::int, m_score::int, rfm_group
        FROM automation.customer_profile ORDER BY customer_key$$,
    $$VALUES (101::bigint, 1, 10::numeric, 1, 1, 1, 'hibernating'),
             (102, 2, 40, 1, 1, 1, 'hibernating'),
             (103, 2, 60, 2, 1, 2, 'about_to_sleep'),
             (104, 4, 160, 2, 2, 2, 'about_to_sleep'),
             (105, 5, 250, 3, 3, 3, 'potential_loyalist'),
             (106, 6, 360, 3, 3, 3, 'potential_loyalist'),
             (107, 7, 490, 4, 4, 4, 'champions'),
             (108, 8, 640, 4, 4, 4, 'champions'),
             (109, 9, 810, 5, 5, 5, 'champions'),
             (110, 10, 1000, 5, 5, 5, 'champions')$$,
    'RFM scores at the quintile boundaries; equal order counts get equal F scores');
CREATE TEMP TABLE scored AS SELECT * FROM automation.customer_profile;
UPDATE automation.customer_profile SET r_score = NULL, f_score = NULL, m_score = NULL, rfm_group = NULL,
                                       lifecycle_stage = 'new', vip_tier = 'gold', loyalty_points = 0;
SELECT is(automation._rescore('2025-04-01 00:00+00'), 10::bigint, 'set-based rescoring rewrites what differs');
SELECT is_empty($$SELECT * FROM automation.customer_profile EXCEPT SELECT * FROM scored$$,
                'and agrees with the pass on every column');
SELECT is(automation._rfm_group(5, 1), 'recent_customers', 'R 4-5 with one order: recent customers');
SELECT is(automation._rfm_group(1, 5), 'cant_lose', 'R 1-2, F 5: can''t lose');
SELECT is(automation._rfm_group(2, 3), 'at_risk', 'R 1-2, F 3-4: at risk');
SELECT is(automation._rfm_group(3, 1), 'promising', 'R 3, F 1: promising');
SELECT is(automation._rfm_group(3, 5), 'loyal_customers', 'R 3, F 4-5: loyal customers');

-- C: incremental equals full.  Without change capture a refresh is full.
SELECT is(automation.change_capture_enabled(), false, 'change capture is off until the DBA enables it');
SELECT automation.refresh_profiles(now => '2025-04-01 00:00+00');
SELECT is((SELECT reason FROM automation.profile_refresh ORDER BY refresh_id DESC LIMIT 1),
          'change capture is not enabled: call automation.enable_change_capture() for incremental refreshes',
          'without change capture the refresh is full, and says why');
SELECT automation.enable_change_capture();
SELECT is(automation.change_capture_enabled(), true, 'enable_change_capture() installs the triggers');
INSERT INTO pb.orders (customer_id, placed_at, total, status) VALUES
    (101, '2025-04-01 01:00+00', 30, 'paid'), (111, '2025-04-02 00:00+00', 12.5, 'paid');
UPDATE pb.orders SET status = 'cancelled' WHERE id = (SELECT min(id) FROM pb.orders WHERE customer_id = 105);
DELETE FROM pb.orders WHERE id = (SELECT max(id) FROM pb.orders WHERE customer_id = 110);
SELECT set_eq($$SELECT customer_key FROM automation.dirty_customer$$, ARRAY[101, 105, 110, 111]::bigint[],
              'inserted, re-statused and deleted orders mark their customers');
-- 40 days on, orders of customers who did not change leave the 90-day window
-- too, and every customer who did not order for 31 days is lapsing: all
-- eleven profiles are written again (a later test sees only some written).
SELECT is(automation.refresh_profiles(now => '2025-05-11 00:00+00'), 11::bigint,
          'the incremental refresh rewrites the changed profiles and those the days moved');
SELECT is((SELECT full_refresh FROM automation.profile_refresh ORDER BY refresh_id DESC LIMIT 1), false, 'it was incremental');
SELECT is_empty($$SELECT customer_key FROM automation.dirty_customer$$, 'and drained the changed customers');
CREATE TEMP TABLE incremental AS SELECT * FROM automation.customer_profile;
SELECT automation.refresh_profiles(true, '2025-05-11 00:00+00');
SELECT is_empty($$
    SELECT customer_key, first_order_at, last_order_at, order_count, total_spent, spent_90d, spent_365d, spent_prev_quarter,
           mean_gap_days, gap_stddev_days, preferred_hour, timezone, r_score, f_score, m_score, rfm_group,
           lifecycle_stage, vip_tier, loyalty_points, categories
      FROM incremental
    EXCEPT
    SELECT customer_key, first_order_at, last_order_at, order_count, total_spent, spent_90d, spent_365d, spent_prev_quarter,
           mean_gap_days, gap_stddev_days, preferred_hour, timezone, r_score, f_score, m_score, rfm_group,
           lifecycle_stage, vip_tier, loyalty_points, categories
      FROM automation.customer_profile$$, 'incremental and full agree (incremental rows missing from full)');
SELECT is((SELECT count(*) FROM incremental), (SELECT count(*) FROM automation.customer_profile),
          'incremental and full have the same customers');
SELECT is((SELECT spent_90d FROM automation.customer_profile WHERE customer_key = 110), 700::numeric,
          'orders that aged out of the 90 days are gone from spent_90d');
-- Categories from order lines: a full refresh reads the lines on their own
-- and maps each order to its customer; they are those of the counted orders.
CREATE TABLE pb.products (id integer PRIMARY KEY, name text, category text);
INSERT INTO pb.products VALUES (1, 'collar', 'dog'), (2, 'tuna', 'cat food'), (3, 'ball', NULL), (4, 'leash', 'dog'),
                               (5, 'seed', 'bird');
CREATE TABLE pb.order_lines (order_id bigint, product_id integer, quantity integer);
INSERT INTO pb.order_lines SELECT o.id, p, 1 FROM pb.orders o, generate_series(1, 4) p WHERE (o.id + p) % 3 = 0;
INSERT INTO pb.order_lines SELECT o.id, 5, 1 FROM pb.orders o WHERE o.status <> 'paid';
SELECT automation.bind_order_lines('pb.order_lines', 'order_id', 'product_id', 'quantity');
SELECT automation.bind_products('pb.products', 'id', 'name', 'category');
SELECT automation.enable_change_capture();
SELECT automation.refresh_profiles(true, '2025-05-11 00:00+00');
SELECT is_empty($$
    SELECT customer_key, categories FROM automation.customer_profile
    EXCEPT
    SELECT o.customer_id, coalesce(array_agg(DISTINCT p.category ORDER BY p.category) FILTER (WHERE p.category IS NOT NULL), '{}')
      FROM pb.orders o LEFT JOIN pb.order_lines l ON l.order_id = o.id LEFT JOIN pb.products p ON p.id = l.product_id
     WHERE o.status = 'paid' GROUP BY 1$$,
    'categories are those of the lines of counted orders, in name order');

-- Later the same day an incremental refresh moves the stored RFM thresholds
-- by the changed profiles alone and scores only the customers whose scores
-- can have moved: new orders, a new customer, a customer whose orders are
-- all gone.
INSERT INTO pb.orders (customer_id, placed_at, total, status) VALUES
    (101, '2025-05-11 02:00+00', 500, 'paid'), (102, '2025-05-11 03:00+00', 1, 'paid'),
    (103, '2025-05-11 03:30+00', 2000, 'paid'), (112, '2025-05-11 04:00+00', 50, 'paid'),
    (105, '2025-05-11 07:00+00', 5, 'paid'), (113, '2025-05-11 08:00+00', 70, 'paid');
INSERT INTO pb.order_lines SELECT o.id, 5, 1 FROM pb.orders o WHERE o.customer_id IN (101, 112) AND o.placed_at > '2025-05-11';
DELETE FROM pb.orders WHERE customer_id = 104;
CREATE TEMP TABLE thresholds_before AS SELECT r, f, m FROM automation.profile_threshold;
SELECT automation.refresh_profiles(now => '2025-05-11 06:00+00');
SELECT results_eq($$SELECT full_refresh, rescored, customers FROM automation.profile_refresh ORDER BY refresh_id DESC LIMIT 1$$,
                  $$VALUES (false, true, 5::bigint)$$, 'within the day the refresh is incremental and rescores');
SELECT is((SELECT next_change_at FROM automation.customer_profile WHERE customer_key = 105),
          '2025-05-11 07:00+00'::timestamptz, 'an order placed ahead of now is when the profile changes next');
SELECT ok(EXISTS (SELECT FROM automation.dirty_customer WHERE customer_key = 113)
          AND NOT EXISTS (SELECT FROM automation.customer_profile WHERE customer_key = 113),
          'a customer whose only order is still to come has no profile and is looked at again');
SELECT isnt((SELECT ROW(r, f, m) FROM automation.profile_threshold), (SELECT ROW(r, f, m) FROM thresholds_before),
            'the changed profiles moved the thresholds');
CREATE TEMP TABLE same_day AS SELECT * FROM automation.customer_profile;
CREATE TEMP TABLE same_day_thresholds AS SELECT * FROM automation.profile_threshold;
SELECT automation.refresh_profiles(true, '2025-05-11 06:00+00');
SELECT is_empty($$
    (SELECT customer_key, first_order_at, last_order_at, order_count, total_spent, spent_90d, spent_365d, spent_prev_quarter,
            mean_gap_days, gap_stddev_days, preferred_hour, timezone, r_score, f_score, m_score, rfm_group,
            lifecycle_stage, vip_tier, loyalty_points, categories, next_change_at FROM same_day
     EXCEPT
     SELECT customer_key, first_order_at, last_order_at, order_count, total_spent, spent_90d, spent_365d, spent_prev_quarter,
            mean_gap_days, gap_stddev_days, preferred_hour, timezone, r_score, f_score, m_score, rfm_group,
            lifecycle_stage, vip_tier, loyalty_points, categories, next_change_at FROM automation.customer_profile)
    UNION ALL
    (SELECT customer_key, first_order_at, last_order_at, order_count, total_spent, spent_90d, spent_365d, spent_prev_quarter,
            mean_gap_days, gap_stddev_days, preferred_hour, timezone, r_score, f_score, m_score, rfm_group,
            lifecycle_stage, vip_tier, loyalty_points, categories, next_change_at FROM automation.customer_profile
     EXCEPT
     SELECT customer_key, first_order_at, last_order_at, order_count, total_spent, spent_90d, spent_365d, spent_prev_quarter,
            mean_gap_days, gap_stddev_days, preferred_hour, timezone, r_score, f_score, m_score, rfm_group,
            lifecycle_stage, vip_tier, loyalty_points, categories, next_change_at FROM same_day)$$,
    'scoring only the changed and the moved agrees with a full refresh');
SELECT is((SELECT ROW(profiles, r, r_below, r_upto, f, f_below, f_upto, m, m_below, m_upto) FROM same_day_thresholds),
          (SELECT ROW(profiles, r, r_below, r_upto, f, f_below, f_upto, m, m_below, m_upto) FROM automation.profile_threshold),
          'the moved thresholds and their ranks are those of the full pass');
SELECT is((SELECT scored_at FROM same_day_thresholds), '2025-05-11 00:00+00'::timestamptz,
          'the incremental refresh did not score every profile again');
-- When the orders placed ahead come due, an incremental refresh takes them
-- in, also when change capture was enabled again since the full refresh.
SELECT automation.enable_change_capture();
SELECT automation.refresh_profiles(now => '2025-05-11 09:00+00');
CREATE TEMP TABLE later_that_day AS SELECT * FROM automation.customer_profile;
SELECT automation.refresh_profiles(true, '2025-05-11 09:00+00');
SELECT is_empty($$
    (SELECT customer_key, order_count, total_spent, spent_90d, last_order_at, r_score, f_score, m_score, rfm_group,
            lifecycle_stage, categories, next_change_at FROM later_that_day
     EXCEPT
     SELECT customer_key, order_count, total_spent, spent_90d, last_order_at, r_score, f_score, m_score, rfm_group,
            lifecycle_stage, categories, next_change_at FROM automation.customer_profile)
    UNION ALL
    (SELECT customer_key, order_count, total_spent, spent_90d, last_order_at, r_score, f_score, m_score, rfm_group,
            lifecycle_stage, categories, next_change_at FROM automation.customer_profile
     EXCEPT
     SELECT customer_key, order_count, total_spent, spent_90d, last_order_at, r_score, f_score, m_score, rfm_group,
            lifecycle_stage, categories, next_change_at FROM later_that_day)$$,
    'orders that came due are taken in, as a full refresh does');
-- A new quarter makes the next refresh full.
SELECT automation.refresh_profiles(now => '2025-07-02 00:00+00');
SELECT is((SELECT reason FROM automation.profile_refresh ORDER BY refresh_id DESC LIMIT 1),
          'a new quarter began since the last refresh', 'a new quarter means a full refresh');
-- So does another default time zone: the quarters, the days and the
-- preferred hours of customers without their own zone move with it.
SET LOCAL automation.default_timezone = 'America/New_York';
SELECT automation.refresh_profiles(now => '2025-07-02 01:00+00');
SELECT is((SELECT reason FROM automation.profile_refresh ORDER BY refresh_id DESC LIMIT 1),
          'automation.default_timezone is America/New_York, the last refresh read it as UTC',
          'another default time zone means a full refresh');
SET LOCAL automation.default_timezone = 'UTC';
SELECT automation.disable_change_capture();
SELECT is(automation.change_capture_enabled(), false, 'disable_change_capture() removes the triggers');

-- D: keys of type uuid and text, and orders in a view read out of time order,
-- on a fresh start (segments never refreshed: time starts again).
TRUNCATE automation.customer_profile, automation.segment_member;
UPDATE automation.segment SET refreshed_at = NULL;
SELECT automation.unbind('orders');
CREATE SCHEMA pc;
CREATE TABLE pc.orders (customer uuid, at timestamptz, amount integer);
INSERT INTO pc.orders VALUES
    ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2025-03-20 10:00+00', 30),
    ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2025-03-01 10:00+00', 10),
    ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2025-03-10 10:00+00', 20),
    ('b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', '2025-03-05 10:00+00', 5);
CREATE VIEW pc.orders_view AS SELECT * FROM pc.orders;
SELECT automation.bind_orders('pc.orders_view', 'customer', 'at', 'amount');
SELECT is(automation.refresh_profiles(true, '2025-04-01 00:00+00'), 2::bigint, 'orders bound to a view with uuid keys');
SELECT col_type_is('automation', 'customer_profile', 'customer_key', 'uuid', 'the profile key is a uuid');
SELECT results_eq(
    $$SELECT order_count, total_spent, first_order_at, last_order_at, mean_gap_days, round(gap_stddev_days::numeric, 6)
        FROM automation.customer_profile WHERE customer_key = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'$$,
    $$VALUES (3, 60::numeric, '2025-03-01 10:00+00'::timestamptz, '2025-03-20 10:00+00'::timestamptz, 9.5::float8, 0.5::numeric)$$,
    'orders read out of time order still give the right gaps');
SET LOCAL client_min_messages = error;
SELECT lives_ok($$SELECT automation.refresh_segments('2025-04-01 00:00+00')$$,
                'a segment that cannot be evaluated (customers no longer bound) does not stop the others');
RESET client_min_messages;
SELECT is((SELECT pg_typeof(customer_key)::text FROM automation.segment_members('new') LIMIT 1), 'uuid',
          'segment_members returns uuid keys');
SELECT throws_ok($$SELECT automation.enable_change_capture()$$, '42809', NULL, 'a view cannot carry change capture');

TRUNCATE automation.customer_profile, automation.segment_member;
SELECT automation.unbind('orders');
CREATE TABLE pc.text_orders (handle text, at timestamptz, amount numeric(8,3));
INSERT INTO pc.text_orders VALUES ('ada', '2025-03-01 10:00+00', 1.125), ('ada', '2025-03-02 10:00+00', 2.250),
                                   ('bob', '2025-03-03 10:00+00', 0.001);
SELECT automation.bind_orders('pc.text_orders', 'handle', 'at', 'amount');
SELECT automation.refresh_profiles(true, '2025-04-01 00:00+00');
SELECT results_eq($$SELECT customer_key, total_spent::text FROM automation.customer_profile ORDER BY 1$$,
                  $$VALUES ('ada'::text, '3.375'), ('bob', '0.001')$$, 'text keys; exact sums at the column''s scale');
ALTER TABLE pc.text_orders ALTER COLUMN at TYPE text;
SELECT throws_ok($$SELECT automation.refresh_profiles(true, '2025-04-01 00:00+00')$$, '55000',
                 'the shop''s orders no longer fit their binding: column at of pc.text_orders now has type text, bound as timestamp with time zone',
                 'a bound column retyped since stops the refresh, rather than being read as the type it was bound with');
ALTER TABLE pc.text_orders ALTER COLUMN at TYPE timestamptz USING at::timestamptz;

-- amounts of any scale stay exact: the pass switches to numeric arithmetic
-- when an amount has more decimals than it can hold as a scaled integer;
-- float amounts are read through their decimal form.
TRUNCATE automation.customer_profile;
SELECT automation.unbind('orders');
CREATE TABLE pc.fine_orders (handle text, at timestamptz, amount numeric, amount_f float8);
INSERT INTO pc.fine_orders VALUES ('ada', '2025-03-01 10:00+00', 0.10, 0.1), ('ada', '2025-03-02 10:00+00', 0.000000001, 0.2),
                                   ('bob', '2025-03-03 10:00+00', 12345678901234.5, 0.3), ('ada', '2025-03-04 10:00+00', 0.20, 0.3);
SELECT automation.bind_orders('pc.fine_orders', 'handle', 'at', 'amount');
SELECT automation.refresh_profiles(true, '2025-04-01 00:00+00');
SELECT results_eq($$SELECT customer_key, total_spent FROM automation.customer_profile ORDER BY 1$$,
                  $$VALUES ('ada'::text, 0.300000001::numeric), ('bob', 12345678901234.5)$$,
                  'sums stay exact past the scale of a scaled integer');
SELECT automation.bind_orders('pc.fine_orders', 'handle', 'at', 'amount_f');
SELECT automation.refresh_profiles(true, '2025-04-01 00:00+00');
SELECT results_eq($$SELECT customer_key, total_spent FROM automation.customer_profile ORDER BY 1$$,
                  $$VALUES ('ada'::text, 0.6::numeric), ('bob', 0.3)$$,
                  'float amounts are summed as the decimals they print as, not as floats');
-- A total entered wrong, beyond what loyalty points can count: the points
-- stop at a bigint's largest, the refresh goes on.
SELECT automation.bind_orders('pc.fine_orders', 'handle', 'at', 'amount');
UPDATE pc.fine_orders SET amount = 1e19 WHERE handle = 'bob';
SELECT lives_ok($$SELECT automation.refresh_profiles(true, '2025-04-01 00:00+00')$$, 'a total of 1e19 is read');
SELECT results_eq($$SELECT total_spent, loyalty_points FROM automation.customer_profile WHERE customer_key = 'bob'$$,
                  $$VALUES (1e19::numeric, 9223372036854775807::bigint)$$,
                  'exactly, and its points are held at a bigint''s largest');

SELECT * FROM finish();
ROLLBACK;
