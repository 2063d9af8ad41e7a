-- Journeys in simulated time: the five presets on hand-built customers,
-- with the exact messages, their timing, variants, exits and caps.
BEGIN;
SELECT plan(54);

SET LOCAL automation.default_timezone = 'UTC';
CREATE SCHEMA jshop;
CREATE TABLE jshop.customers (id bigint PRIMARY KEY, email text, consent boolean, first_name text, tz text, phone text);
CREATE TABLE jshop.products (id bigint PRIMARY KEY, name text, category text, stock integer, price numeric(10,2));
CREATE TABLE jshop.orders (id bigint PRIMARY KEY, customer_id bigint, placed_at timestamptz, total numeric(12,2), status text);
CREATE TABLE jshop.order_lines (order_id bigint, product_id bigint, quantity integer, unit_price numeric(10,2));
CREATE TABLE jshop.carts (id bigint PRIMARY KEY, customer_id bigint, updated_at timestamptz, total numeric(12,2),
                          order_id bigint, stage text);
CREATE TABLE jshop.cart_lines (cart_id bigint, product_id bigint, quantity integer);
CREATE TABLE jshop.signups (customer_id bigint, signed_up_at timestamptz);

INSERT INTO jshop.products VALUES
    (1, 'Dog food 10 kg', 'dog food', 100, 40.00),
    (2, 'Coffee machine', 'coffee machines', 3, 150.00),
    (3, 'Vitamins 100 tablets', 'vitamins', 50, 12.00);
INSERT INTO jshop.customers VALUES
    (1, E' Ada@Example.com\r\n', true, 'Ada', 'Europe/Helsinki', NULL),
    (2, 'bob@example.com', true, 'Bob', 'UTC', NULL),
    (3, 'cy@example.com', false, 'Cy', 'UTC', NULL),
    (4, 'dee@example.com', true, 'Dee', 'UTC', NULL),
    (5, 'eve@example.com', true, 'Eve', 'America/New_York', NULL),
    (6, 'fay@example.com', true, 'Fay', 'UTC', NULL),
    (7, 'gus@example.com', true, 'Gus', 'UTC', NULL);
-- Bob has ordered three times; Gus last ordered on 1 March.
INSERT INTO jshop.orders VALUES
    (11, 2, '2025-11-01 10:00+00', 40.00, 'delivered'),
    (12, 2, '2025-12-01 10:00+00', 40.00, 'delivered'),
    (13, 2, '2026-01-01 10:00+00', 40.00, 'delivered'),
    (14, 7, '2026-03-01 10:00+00', 12.00, 'delivered');
INSERT INTO jshop.order_lines VALUES (11, 1, 1, 40), (12, 1, 1, 40), (13, 1, 1, 40), (14, 3, 1, 12);
-- Four carts left at 09:00 UTC on 10 March; Eve's at 22:00.
INSERT INTO jshop.carts VALUES
    (101, 1, '2026-03-10 09:00+00', 40.00, NULL, 'cart'),
    (102, 2, '2026-03-10 09:00+00', 150.00, NULL, 'payment'),
    (103, 3, '2026-03-10 09:00+00', 40.00, NULL, 'cart'),
    (104, 4, '2026-03-10 09:00+00', 40.00, NULL, 'shipping'),
    (105, 5, '2026-03-10 22:00+00', 150.00, NULL, 'cart');
INSERT INTO jshop.cart_lines VALUES (101, 1, 1), (102, 2, 1), (103, 1, 1), (104, 1, 1), (105, 2, 1);
INSERT INTO jshop.signups VALUES (6, '2026-03-10 08:00+00');

SELECT automation.bind_customers('jshop.customers', 'id', 'email', 'consent', first_name_column => 'first_name',
                                 timezone_column => 'tz', phone_column => 'phone');
SELECT automation.bind_orders('jshop.orders', 'customer_id', 'placed_at', 'total', order_id_column => 'id',
                              status_column => 'status', counted_statuses => ARRAY['paid', 'shipped', 'delivered']);
SELECT automation.bind_order_lines('jshop.order_lines', 'order_id', 'product_id', 'quantity', 'unit_price');
SELECT automation.bind_products('jshop.products', 'id', 'name', 'category', 'stock', price_column => 'price');
SELECT automation.bind_carts('jshop.carts', 'id', 'customer_id', 'updated_at', 'total', 'order_id', 'stage');
SELECT automation.bind_cart_lines('jshop.cart_lines', 'cart_id', 'product_id', 'quantity');
SELECT automation.bind_signups('jshop.signups', 'customer_id', 'signed_up_at');

-- The view of every decision took the shop's key type with the tables it
-- reads, and kept its description.
SELECT col_type_is('automation', 'decision_log', 'customer_key', 'bigint', 'decision_log has the shop''s customer keys');
SELECT is(obj_description('automation.decision_log'::regclass, 'pg_class'),
          'every enrollment, send, hold-out, deferral, skip, exit and completion, with its reason (automation.decision_note, the enrollments and the messages)',
          'and its description');

SELECT is(automation.install_preset('abandoned_cart'), 'abandoned_cart', 'abandoned_cart installs');
SELECT is(automation.install_preset('welcome'), 'welcome', 'welcome installs');
SELECT is(automation.install_preset('thank_you'), 'thank_you', 'thank_you installs');
SELECT is(automation.install_preset('feedback'), 'feedback', 'feedback installs');
SELECT is(automation.install_preset('win_back', '{"after_days": 15}'), 'win_back', 'win_back installs with an option');

-- 10 March 10:30: carts idle for 90 minutes are enrolled, nothing is due yet;
-- Fay's sign-up is welcomed at once.
SELECT is((SELECT string_agg(stage, ',' ORDER BY stage) FROM automation.tick('2026-03-10 10:30+00')),
          'archive,enroll,lifecycle,notify,predictions,profiles,related_products,segments,steps', 'a tick runs every stage');
SELECT is((SELECT string_agg(subject, ',' ORDER BY subject) FROM automation.enrollment WHERE journey = 'abandoned_cart'),
          'cart:101,cart:102,cart:103,cart:104', 'the four idle carts are enrolled, the fresh one is not');
SELECT is((SELECT string_agg(template || '>' || customer_key, ',') FROM automation.outbox),
          'welcome>6', 'only the welcome message goes at once');

-- Dee pays for her cart at 11:00.
INSERT INTO jshop.orders VALUES (900, 4, '2026-03-10 11:00+00', 40.00, 'paid');
UPDATE jshop.carts SET order_id = 900 WHERE id = 104;

-- What 13:05 would bring, without writing anything.
SELECT is((SELECT count(*) FROM automation.simulate('2026-03-10 13:05+00') WHERE journey = 'abandoned_cart'),
          2::bigint, 'simulate shows two cart reminders');
SELECT is((SELECT count(*) FROM automation.outbox WHERE journey = 'abandoned_cart'), 0::bigint,
          'and writes nothing');

-- 13:05: the first reminders.
SELECT lives_ok($$SELECT * FROM automation.tick('2026-03-10 13:05+00')$$, 'tick at 13:05');
SELECT results_eq(
    $$SELECT customer_key, template, variant, send_after FROM automation.outbox
       WHERE journey = 'abandoned_cart' ORDER BY customer_key$$,
    $$VALUES (1::bigint, 'cart_reminder_trust', 'new_customer', '2026-03-10 13:05+00'::timestamptz),
             (2::bigint, 'cart_reminder_loyalty', 'loyal_customer', '2026-03-10 13:05+00'::timestamptz)$$,
    'Ada (no orders) gets the trust variant, Bob (three orders) the loyalty one');
SELECT is((SELECT payload -> 'cart' FROM automation.outbox WHERE journey = 'abandoned_cart' AND customer_key = 1),
          '{"url": "https://shop.example/cart/101", "lines": [{"name": "Dog food 10 kg", "price": 40.00, "product": 1, "quantity": 1, "only_left": null}], "stage": "cart", "total": 40.00, "cart_id": 101}'::jsonb,
          'the payload carries the restore link and the cart lines');
SELECT is((SELECT payload -> 'cart' -> 'lines' -> 0 ->> 'only_left' FROM automation.outbox
            WHERE journey = 'abandoned_cart' AND customer_key = 2), '3', 'only 3 coffee machines left');
SELECT is((SELECT payload ->> 'first_name' FROM automation.outbox WHERE journey = 'abandoned_cart' AND customer_key = 1),
          'Ada', 'and the first name');
SELECT is((SELECT recipient FROM automation.outbox WHERE journey = 'abandoned_cart' AND customer_key = 1),
          'Ada@Example.com', 'to her address as the shop keeps it, without the blank and the CR LF around it');
SELECT results_eq(
    $$SELECT subject, status, exit_reason FROM automation.enrollment
       WHERE journey = 'abandoned_cart' AND status = 'exited' ORDER BY subject$$,
    $$VALUES ('cart:103', 'exited', 'no_consent'), ('cart:104', 'exited', 'converted')$$,
    'Cy without consent and Dee who paid leave the journey');
SELECT is((SELECT count(*) FROM automation.decision_log WHERE subject = 'cart:104' AND decision = 'sent'), 0::bigint,
          'nothing was ever sent for the paid cart');

-- Ticking again changes nothing.
SELECT lives_ok($$SELECT * FROM automation.tick('2026-03-10 13:06+00')$$, 'tick again');
SELECT is((SELECT count(*) FROM automation.outbox WHERE journey = 'abandoned_cart'), 2::bigint, 'no message twice');

-- Eve's cart: step 1 is due at 02:00 UTC = 22:00 in New York, in quiet hours.
SELECT lives_ok($$SELECT * FROM automation.tick('2026-03-11 02:05+00')$$, 'tick at 02:05');
SELECT is((SELECT reason FROM automation.decision_log WHERE subject = 'cart:105' AND decision = 'deferred'),
          'quiet_hours until 2026-03-11 12:00:00+00', 'Eve''s reminder waits for 08:00 her time');
SELECT is((SELECT count(*) FROM automation.outbox WHERE customer_key = 5), 0::bigint, 'and is not written yet');

-- 11 March 09:10: the second reminders, with a discount code.
SELECT lives_ok($$SELECT * FROM automation.tick('2026-03-11 09:10+00')$$, 'tick at 09:10');
SELECT results_eq(
    $$SELECT customer_key, template, (payload -> 'discount' ->> 'percent')::numeric,
             length(payload -> 'discount' ->> 'code'), (payload -> 'discount' ->> 'expires_at')::timestamptz
        FROM automation.outbox WHERE journey = 'abandoned_cart' AND step = 2 ORDER BY customer_key$$,
    $$VALUES (1::bigint, 'cart_expiring', 10::numeric, 12, '2026-03-12 09:10+00'::timestamptz),
             (2::bigint, 'cart_expiring', 10::numeric, 12, '2026-03-12 09:10+00'::timestamptz)$$,
    'the second reminder carries a 10 % code valid 24 hours');
SELECT isnt((SELECT payload -> 'discount' ->> 'code' FROM automation.outbox WHERE step = 2 AND customer_key = 1),
            (SELECT payload -> 'discount' ->> 'code' FROM automation.outbox WHERE step = 2 AND customer_key = 2),
            'each code is unique');
SELECT results_eq(
    $$SELECT at, decision, step, subject, variant,
             message_id = (SELECT o.id FROM automation.outbox o
                            WHERE o.customer_key = 1 AND o.journey = 'abandoned_cart' AND o.step = x.step),
             message_status
        FROM automation.explain_customer(1::bigint) x WHERE journey = 'abandoned_cart'$$,
    $$VALUES ('2026-03-10 10:30+00'::timestamptz, 'enrolled'::text, NULL::integer, 'cart:101'::text, NULL::text,
              NULL::boolean, NULL::text),
             ('2026-03-10 13:05+00', 'sent', 1, 'cart:101', 'new_customer', true, 'queued'),
             ('2026-03-11 09:10+00', 'sent', 2, 'cart:101', NULL, true, 'queued'),
             ('2026-03-11 09:10+00', 'completed', NULL, 'cart:101', NULL, NULL, NULL)$$,
    'Ada''s decisions: enrolled, each message sent with its variant and id, completed -- in that order');
SELECT is((SELECT count(*) FROM automation.decision_note WHERE subject = 'cart:101'), 0::bigint,
          'they are read from her enrollment and her messages: no decision row was written for them');

-- Welcome, day 2 (a day after the first message); Fay orders on day 3
-- before the third message is due.
SELECT lives_ok($$SELECT * FROM automation.tick('2026-03-11 10:35+00')$$, 'tick on welcome day 2');
SELECT is((SELECT string_agg(template, ',' ORDER BY step) FROM automation.outbox WHERE journey = 'welcome'),
          'welcome,welcome_get_to_know_us', 'the second welcome message goes a day later');
INSERT INTO jshop.orders VALUES (901, 6, '2026-03-12 07:00+00', 12.00, 'paid');
INSERT INTO jshop.order_lines VALUES (901, 3, 1, 12);
SELECT lives_ok($$SELECT * FROM automation.tick('2026-03-12 11:05+00')$$, 'tick on welcome day 3');
SELECT is((SELECT exit_reason FROM automation.enrollment WHERE journey = 'welcome'), 'ordered',
          'Fay ordered: she leaves the welcome series');
SELECT is((SELECT count(*) FROM automation.outbox WHERE journey = 'welcome'), 2::bigint, 'no third welcome message');
-- No tick came between Eve's 08:00 and now: her reminder is a day past
-- the moment it first came due (valid_for 1 day), and is given up.
SELECT is((SELECT decision || ':' || reason FROM automation.decision_log WHERE subject = 'cart:105' AND decision = 'skipped'),
          'skipped:moment_passed', 'Eve''s reminder, deferred by the quiet hours and not sent within a day of its moment, is given up');

-- Her order is thanked 4 hours later as a first order, transactional.
SELECT results_eq(
    $$SELECT template, variant, purpose, payload -> 'order' ->> 'order_id' FROM automation.outbox
       WHERE journey = 'thank_you' AND customer_key = 6$$,
    $$VALUES ('thank_you_first_order', 'first_order', 'transactional', '901')$$,
    'a first order gets the loyalty programme thank-you');

-- Cy (no consent) orders: thank-you yes (transactional), feedback no.
INSERT INTO jshop.orders VALUES (902, 3, '2026-03-12 12:00+00', 40.00, 'paid');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-03-12 16:05+00')$$, 'tick after Cy''s order');
SELECT is((SELECT template FROM automation.outbox WHERE journey = 'thank_you' AND customer_key = 3),
          'thank_you_first_order', 'transactional messages need no marketing consent');

-- Win-back: Gus has not ordered since 1 March; 15 days later he is missed.
SELECT is((SELECT template FROM automation.outbox WHERE journey = 'win_back' AND customer_key = 7),
          NULL, 'Gus was not missed before 16 March');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-03-16 12:00+00')$$, 'tick on 16 March');
SELECT is((SELECT payload -> 'last_order' FROM automation.outbox WHERE journey = 'win_back' AND customer_key = 7),
          '[{"name": "Vitamins 100 tablets", "product": 3, "quantity": 1}]'::jsonb,
          'the win-back message shows what he bought last');

-- Feedback 14 days after each order, to those who consented.
SELECT lives_ok($$SELECT * FROM automation.tick('2026-03-26 12:05+00')$$, 'tick 14 days later');
SELECT is((SELECT string_agg(customer_key::text, ',' ORDER BY customer_key) FROM automation.outbox WHERE journey = 'feedback'),
          '4,6', 'feedback requests go to the customers who consented (Dee and Fay)');
SELECT is((SELECT exit_reason FROM automation.enrollment WHERE journey = 'feedback' AND customer_key = 3), 'no_consent',
          'Cy''s feedback request is dropped for want of consent');
SELECT is((SELECT reason FROM automation.decision_log WHERE journey = 'win_back' AND customer_key = 4 AND decision = 'deferred'),
          'frequency_cap until 2026-03-27 08:00:00+00',
          'Dee''s win-back waits 16 hours behind her feedback request, then for the morning');

-- Where carts were left, and how many came back.
SELECT results_eq(
    $$SELECT dimension, value, abandoned, recovered FROM automation.cart_abandonment_stats ORDER BY 1, 2$$,
    $$VALUES ('cart_value', '100-200', 2::bigint, 0::bigint), ('cart_value', '25-50', 3::bigint, 1::bigint),
             ('checkout_stage', 'cart', 3::bigint, 0::bigint), ('checkout_stage', 'payment', 1::bigint, 0::bigint),
             ('checkout_stage', 'shipping', 1::bigint, 1::bigint),
             ('customer', 'new', 4::bigint, 1::bigint), ('customer', 'returning', 1::bigint, 0::bigint)$$,
    'cart_abandonment_stats by value band, checkout stage and new vs returning');
-- A cart bought after its last reminder is recovered too, within
-- automation.attribution_window (5 days) of that reminder; later, not.
CREATE TEMP TABLE left_carts AS
SELECT e.customer_key, e.updated_at, row_number() OVER (ORDER BY e.subject) AS n
  FROM automation.enrollment e WHERE e.journey = 'abandoned_cart' AND e.status = 'completed';
SELECT is((SELECT count(*) FROM left_carts) >= 2, true, 'two carts whose reminders all went out');
INSERT INTO jshop.orders SELECT 950 + n, customer_key, updated_at + CASE n WHEN 1 THEN interval '1 day' ELSE interval '6 days' END,
                                30.00, 'paid'
  FROM left_carts WHERE n <= 2;
SELECT is((SELECT sum(recovered) FROM automation.cart_abandonment_stats WHERE dimension = 'customer'), 2::numeric,
          'the one bought a day after its last reminder is recovered, the one bought six days after is not');

-- An analyst reads the enrollments and the reports, not the enrollments'
-- context: the shop's rows (a cart's lines, a birthday) are not theirs.
CREATE ROLE regress_journey_analyst;
SELECT count(*) AS grants FROM automation.grant_access('regress_journey_analyst', 'analyst');
SET LOCAL ROLE regress_journey_analyst;
SELECT lives_ok($$SELECT journey, subject, status, exit_reason FROM automation.enrollment$$,
                'an analyst reads who is in which journey');
SELECT throws_ok($$SELECT context FROM automation.enrollment$$, '42501', NULL, 'but not the enrollments'' context');
SELECT lives_ok($$SELECT * FROM automation.cart_abandonment_stats$$, 'the reports built on it work for them');
RESET ROLE;

-- Dropping a journey takes its enrollments with it; the messages it wrote,
-- and the decisions that sent them, stay.
SELECT is(automation.drop_journey('abandoned_cart'), true, 'drop abandoned_cart');
SELECT results_eq(
    $$SELECT (SELECT count(*) FROM automation.enrollment WHERE journey = 'abandoned_cart'),
             (SELECT count(*) FROM automation.outbox WHERE journey = 'abandoned_cart'),
             (SELECT string_agg(decision, ',' ORDER BY decision) FROM automation.decision_log
               WHERE journey = 'abandoned_cart' AND subject = 'cart:101')$$,
    $$VALUES (0::bigint, 4::bigint, 'sent,sent')$$,
    'its enrollments are gone, its four messages (Ada''s two, Bob''s two) and their sent decisions stay');

SELECT * FROM finish();
ROLLBACK;
