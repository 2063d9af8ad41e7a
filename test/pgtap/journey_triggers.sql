-- The triggers not walked by the preset test: order status (a
-- transactional SMS), first order, segment entered, leaving the segment,
-- and re-entry; and a journey made again under its old name, whose
-- messages' dedupe keys are taken already.
BEGIN;
SELECT plan(29);

SET LOCAL automation.default_timezone = 'UTC';
-- Caps are tested elsewhere; here two journeys may write to Ada in one tick.
SET LOCAL automation.min_interval = 0;
CREATE SCHEMA tshop;
CREATE TABLE tshop.customers (id text PRIMARY KEY, email text, consent timestamptz, phone text);
CREATE TABLE tshop.orders (id bigint PRIMARY KEY, customer_id text, placed_at timestamptz, total numeric, status text);
INSERT INTO tshop.customers VALUES
    ('ada', 'ada@example.com', '2025-01-01', '+358401234567'),
    ('bob', 'bob@example.com', NULL, '+358407654321');
INSERT INTO tshop.orders VALUES
    (1, 'ada', '2026-05-01 10:00+00', 700, 'shipped'),
    (2, 'bob', '2026-05-01 11:00+00', 30, 'paid'),
    (10, 'cem', '2026-03-01 10:00+00', 50, 'shipped');
SELECT automation.bind_customers('tshop.customers', 'id', 'email', 'consent', phone_column => 'phone');
SELECT automation.bind_orders('tshop.orders', 'customer_id', 'placed_at', 'total', order_id_column => 'id',
                              status_column => 'status', counted_statuses => ARRAY['paid', 'shipped']);

-- "On its way": an SMS when an order is seen shipped, transactional.
SELECT automation.create_journey('on_its_way', 'order_status', '{"status": "shipped"}', purpose => 'transactional');
SELECT automation.add_step('on_its_way', '0', 'order_shipped', channel => 'sms', includes => ARRAY['order']);
-- A first-order welcome, and a segment journey on a user segment.
SELECT automation.create_journey('first', 'first_order');
SELECT automation.add_step('first', '1 hour', 'first_order_welcome');
SELECT automation.define_segment('big_spenders', 'total_spent >= 500');
SELECT automation.create_journey('big', 'segment_entered', '{"segment": "big_spenders"}', reentry => 'each_time');
SELECT automation.add_step('big', '0', 'big_spender_thanks');
-- A day later, a second message, for those still in the segment then.
SELECT automation.create_journey('big_later', 'segment_entered', '{"segment": "big_spenders"}');
SELECT automation.add_step('big_later', '1 day', 'big_spender_later');

SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-01 12:00+00')$$, 'tick');
SELECT results_eq($$SELECT customer_key, channel, recipient, template, purpose FROM automation.outbox
                     WHERE journey = 'on_its_way'$$,
                  $$VALUES ('ada'::text, 'sms', '+358401234567', 'order_shipped', 'transactional')$$,
                  'Ada''s shipped order sends an SMS to her phone; Bob''s paid order does not');
SELECT is((SELECT count(*) FROM automation.outbox WHERE journey = 'on_its_way'), 1::bigint, 'once');
SELECT is((SELECT string_agg(subject, ',') FROM automation.enrollment WHERE journey = 'on_its_way'), 'order:1:shipped',
          'an order shipped but placed before the lookback (7 days) is not enrolled by a new journey');
SELECT results_eq($$SELECT customer_key, template FROM automation.outbox WHERE journey = 'first' ORDER BY 1$$,
                  $$VALUES ('ada'::text, 'first_order_welcome')$$,
                  'the first-order welcome goes to Ada (consent given); Bob has none');
SELECT is((SELECT exit_reason FROM automation.enrollment WHERE journey = 'first' AND customer_key = 'bob'),
          'no_consent', 'a consent column holding a time counts only when set');
SELECT results_eq($$SELECT customer_key, template FROM automation.outbox WHERE journey = 'big'$$,
                  $$VALUES ('ada'::text, 'big_spender_thanks')$$,
                  'entering a user segment triggers its journey');

-- Ticking again sends nothing new; a second shipment is a new subject.
SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-01 12:30+00')$$, 'tick again');
SELECT is((SELECT count(*) FROM automation.outbox), 3::bigint, 'nothing twice');
INSERT INTO tshop.orders VALUES (3, 'ada', '2026-05-02 09:00+00', 20, 'shipped');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-02 10:00+00')$$, 'tick after another shipment');
SELECT is((SELECT string_agg(payload -> 'order' ->> 'order_id', ',' ORDER BY id) FROM automation.outbox
            WHERE journey = 'on_its_way'), '1,3', 'each shipped order gets its SMS');

-- Leaving the segment and entering it again: each_time enrolls again.
UPDATE tshop.orders SET status = 'cancelled' WHERE id = 1;
SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-03 10:00+00');
                  UPDATE tshop.orders SET status = 'shipped' WHERE id = 1;
                  SELECT * FROM automation.tick('2026-05-04 10:00+00')$$, 'leave and re-enter the segment');
SELECT is((SELECT count(*) FROM automation.enrollment WHERE journey = 'big'), 2::bigint,
          'a customer who re-enters the segment is enrolled again');
-- The same entry seen again (within the triggers' grace) by a session in
-- another time zone is the same occurrence: its subject is written in UTC.
SET LOCAL timezone = 'America/New_York';
SET LOCAL datestyle = 'SQL, DMY';
SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-04 10:30+00')$$, 'a tick from a session in New York');
RESET timezone;
RESET datestyle;
SELECT is((SELECT count(*) FROM automation.enrollment WHERE journey = 'big'), 2::bigint,
          'enrolls nobody again');
SELECT results_eq($$SELECT subject, status, exit_reason FROM automation.enrollment WHERE journey = 'big_later'$$,
                  $$VALUES ('customer:ada'::text, 'exited'::text, 'left_segment'::text)$$,
                  'a step due after the customer left the segment ends the journey ("left_segment")');
SELECT is((SELECT count(*) FROM automation.outbox WHERE journey = 'big_later'), 0::bigint,
          'and sends nothing');

-- Dropped and made again under its name, a journey enrolls Ada's first
-- order once more, but its step's dedupe key (journey:subject:step) is
-- taken: no second welcome, and the decision says why.
-- (The weekly cap, which Ada has reached by now, off.)
SET LOCAL automation.max_per_week = 0;
SELECT automation.drop_journey('first');
SELECT automation.create_journey('first', 'first_order', '{"lookback": "30 days"}');
SELECT automation.add_step('first', '1 hour', 'first_order_welcome');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-05-05 10:00+00')$$, 'tick after the journey is made again');
SELECT is((SELECT count(*) FROM automation.outbox WHERE journey = 'first'), 1::bigint,
          'the welcome is not written a second time');
SELECT results_eq($$SELECT subject, decision, reason FROM automation.decision_log
                     WHERE journey = 'first' AND at = '2026-05-05 10:00+00'
                       AND decision NOT IN ('enrolled', 'completed') ORDER BY 1, 2$$,
                  $$VALUES ('customer:ada'::text, 'sent'::text, 'already written'::text),
                           ('customer:bob', 'exited', 'no_consent')$$,
                  'its key was taken: noted "already written"');

-- Where the shop records when an order's status changed, that is the
-- moment: a refund a month after the order is found, one of long ago not.
ALTER TABLE tshop.orders ADD COLUMN status_at timestamptz;
SELECT throws_ok($$SELECT automation.bind_orders('tshop.orders', 'customer_id', 'placed_at', 'total', order_id_column => 'id',
                                                 status_changed_at_column => 'status_at')$$, '22023',
                 'status_changed_at_column needs status_column', 'a status time without a status is refused');
SELECT automation.bind_orders('tshop.orders', 'customer_id', 'placed_at', 'total', order_id_column => 'id',
                              status_column => 'status', counted_statuses => ARRAY['paid', 'shipped'],
                              status_changed_at_column => 'status_at');
INSERT INTO tshop.orders VALUES (11, 'bob', '2026-01-01 10:00+00', 30, 'refunded', '2026-01-20 10:00+00');
SELECT automation.create_journey('refund', 'order_status', '{"status": "refunded"}', purpose => 'transactional');
SELECT automation.add_step('refund', '0', 'refund_confirmation');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-06-01 10:00+00')$$, 'a tick with the refund journey in place');
UPDATE tshop.orders SET status = 'refunded', status_at = '2026-06-01 11:00+00' WHERE id = 2;
SELECT lives_ok($$SELECT * FROM automation.tick('2026-06-01 12:00+00')$$, 'a tick after Bob''s May order was refunded');
SELECT results_eq($$SELECT subject, anchor_at FROM automation.enrollment WHERE journey = 'refund'$$,
                  $$VALUES ('order:2:refunded'::text, '2026-06-01 11:00+00'::timestamptz)$$,
                  'the order refunded a month after it was placed is enrolled, at its refund; the one refunded in January not');

-- A sign-up time without a time zone is a time in automation.default_timezone,
-- whatever the TimeZone of the session that ticks (the worker's, pg_cron's,
-- an administrator's): seen by two sessions, it is one moment and one
-- enrollment, as the profiles see it.
CREATE TABLE tshop.signups (customer_id text, signed_up_at timestamp);
INSERT INTO tshop.signups VALUES ('ada', '2026-06-01 10:00');
SELECT automation.bind_signups('tshop.signups', 'customer_id', 'signed_up_at');
SELECT automation.create_journey('hello_again', 'signup', reentry => 'each_time', purpose => 'transactional');
SELECT automation.add_step('hello_again', '0', 'hello');
SET LOCAL automation.default_timezone = 'America/New_York';
SET LOCAL TimeZone = 'UTC';
SELECT count(*) FROM automation.tick('2026-06-01 15:30+00');
SET LOCAL TimeZone = 'America/New_York';
SELECT count(*) FROM automation.tick('2026-06-01 15:40+00');
RESET TimeZone;
SELECT results_eq($$SELECT subject, anchor_at FROM automation.enrollment WHERE journey = 'hello_again'$$,
                  $$VALUES ('signup:ada:2026-06-01T14:00:00.000000Z'::text, '2026-06-01 14:00+00'::timestamptz)$$,
                  'a sign-up at 10:00 in New York, ticked in a UTC session and then a New York one: enrolled once, at 14:00 UTC');

-- A sign-up kept as a date is midnight of that day; one written in the
-- afternoon is found all the same, by a tick a few minutes later.
ALTER TABLE tshop.signups ALTER COLUMN signed_up_at TYPE date;
SELECT automation.bind_signups('tshop.signups', 'customer_id', 'signed_up_at');
SELECT count(*) FROM automation.tick('2026-06-02 15:00+00');
INSERT INTO tshop.signups VALUES ('bob', '2026-06-02');
SELECT count(*) FROM automation.tick('2026-06-02 15:10+00');
SELECT results_eq($$SELECT subject, anchor_at FROM automation.enrollment WHERE journey = 'hello_again' AND customer_key = 'bob'$$,
                  $$VALUES ('signup:bob:2026-06-02T04:00:00.000000Z'::text, '2026-06-02 04:00+00'::timestamptz)$$,
                  'a sign-up dated today, written in the afternoon, is enrolled at the next tick (at midnight in New York)');

-- A variant's condition that fails on a tick's messages (checked when
-- defined, it ran on NULLs) holds back its own step's messages, for an
-- hour and with a warning, not the tick: the other journeys' go out.
SELECT automation.create_journey('risky', 'order_placed', purpose => 'transactional');
SELECT automation.add_step('risky', '0', 'risky', variants => '[{"name": "a", "when": "100 / (order_count - order_count) > 1"}]');
SELECT automation.create_journey('steady', 'order_placed', purpose => 'transactional');
SELECT automation.add_step('steady', '0', 'steady', variants => '[{"name": "b", "when": "order_count >= 1"}]');
SELECT count(*) FROM automation.tick('2026-06-02 15:20+00');
INSERT INTO tshop.orders VALUES (20, 'ada', '2026-06-02 15:25+00', 10, 'paid');
SET LOCAL client_min_messages = error;
SELECT lives_ok($$SELECT * FROM automation.tick('2026-06-02 15:30+00')$$,
                'a tick whose variant condition divides by zero on Ada''s new order');
RESET client_min_messages;
SELECT results_eq($$SELECT journey, variant FROM automation.outbox WHERE journey IN ('risky', 'steady')$$,
                  $$VALUES ('steady'::text, 'b'::text)$$, 'the other journey''s message goes out, with its variant');
SELECT results_eq($$SELECT decision, reason FROM automation.decision_log WHERE journey = 'risky' AND decision <> 'enrolled'$$,
                  $$VALUES ('deferred'::text, 'variant_failed until 2026-06-02 16:30:00+00'::text)$$,
                  'the broken step''s message waits an hour, noted as such');

SELECT * FROM finish();
ROLLBACK;
