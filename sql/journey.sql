-- Journeys: defining them, and every definition error, caught when defined
-- rather than at tick time.
\set VERBOSITY default
\set SHOW_CONTEXT never

CREATE SCHEMA rshop;
CREATE TABLE rshop.customers (id bigint PRIMARY KEY, email text, consent boolean);
CREATE TABLE rshop.orders (id bigint PRIMARY KEY, customer_id bigint, placed_at timestamptz, total numeric);
CREATE TABLE rshop.carts (id bigint PRIMARY KEY, customer_id bigint, updated_at timestamptz, total numeric);

-- a trigger whose tables are not bound yet
SELECT automation.create_journey('reminder', 'cart_abandoned');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.bind_customers('rshop.customers', 'id', 'email', 'consent');
SELECT automation.bind_orders('rshop.orders', 'customer_id', 'placed_at', 'total');
SELECT automation.bind_carts('rshop.carts', 'id', 'customer_id', 'updated_at', 'total');

-- a journey of one's own
SELECT automation.create_journey('reminder', 'cart_abandoned', '{"idle": "2 hours"}',
                                 description => 'one reminder, two hours after the cart was left');
SELECT automation.add_step('reminder', '3 hours', 'cart_reminder', includes => ARRAY['cart'],
                           variants => '[{"name": "big", "when": "cart_total >= 200", "template": "cart_big"},
                                         {"name": "a", "split": 50}, {"name": "b", "split": 50}]');
SELECT name, trigger, trigger_options, purpose, reentry, exit_on, holdout_percent, enabled FROM automation.journey;
SELECT journey, step, wait, channel, template, includes, variants FROM automation.journey_step;

-- unknown trigger, purpose, re-entry, options
SELECT automation.create_journey('j1', 'cart_forgotten');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('j1', 'signup', purpose => 'spam');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('j1', 'signup', reentry => 'sometimes');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('j1', 'cart_abandoned', '{"idle": "soon"}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('j1', 'cart_abandoned', '{"idle": "-1 hour"}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('j1', 'signup', '{"lookback": 5}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('abandoned_cart', '{"idle": "0"}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('abandoned_cart', '{"idle": "100000 years"}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('j1', 'signup', '{"lookback": "200000 years"}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('win_back', '{"after_days": 1000000000}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('j1', 'cart_abandoned', '{"colour": "red"}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('j1', 'order_status');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('j1', 'order_status', '{"status": "shipped"}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('j1', 'signup');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('j1', 'segment_entered', '{"segment": "space_pirates"}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('j1', 'segment_entered');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('j1', 'segment_entered', '{"segment": null}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('j1', 'order_status', '{"status": null}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('j1', 'order_status', '{"status": ["shipped"]}');
\echo sqlstate :LAST_ERROR_SQLSTATE
-- a segment to leave, where the trigger enrolls no segment's members
SELECT automation.create_journey('j1', 'signup', exit_on => ARRAY['left_segment']);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('j1', 'order_placed', exit_on => ARRAY['converted']);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('j1', 'order_placed', exit_on => ARRAY['bored']);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('j1', 'order_placed', holdout_percent => 100);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('Bad Name', 'order_placed');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey(NULL, 'order_placed');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.create_journey('reminder', 'cart_abandoned');
\echo sqlstate :LAST_ERROR_SQLSTATE

-- steps: negative wait, missing template, unknown journey, malformed variants
SELECT automation.add_step('reminder', '-1 hour', 'x');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.add_step('reminder', '1 hour', '');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.add_step('reminder', '1 hour', NULL);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.add_step('reminder', '1 hour', 'x', at_preferred_hour => NULL);
\echo sqlstate :LAST_ERROR_SQLSTATE
-- a text message, with no phone numbers bound
SELECT automation.add_step('reminder', '1 hour', 'x', channel => 'sms');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.add_step('nobody', '1 hour', 'x');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.add_step('reminder', '1 hour', 'x', channel => 'Carrier Pigeon');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.add_step('reminder', '1 hour', 'x', includes => ARRAY['horoscope']);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.add_step('reminder', '1 hour', 'x', discount => '{"percent": 150}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.add_step('reminder', '1 hour', 'x', variants => '{"name": "a"}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.add_step('reminder', '1 hour', 'x', variants => '[{"when": "true"}]');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.add_step('reminder', '1 hour', 'x', variants => '[{"name": "a"}]');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.add_step('reminder', '1 hour', 'x', variants => '[{"name": "a", "when": "true", "split": 10}]');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.add_step('reminder', '1 hour', 'x', variants => '[{"name": "a", "when": "shoe_size > 42"}]');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.add_step('reminder', '1 hour', 'x', variants => '[{"name": "a", "when": "cart_total"}]');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.add_step('reminder', '1 hour', 'x', variants => '[{"name": "a", "when": "order_count"}]');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.add_step('reminder', '1000000 years', 'x');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.add_step('reminder', '1 hour', 'x', valid_for => '1000000 years');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.add_step('reminder', '1 hour', 'x', discount => '{}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.add_step('reminder', '1 hour', 'x', discount => '{"percent": 10, "vaild_for": "7 days"}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.add_step('reminder', '1 hour', 'x', discount => '{"percent": 10, "valid_for": 7}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.add_step('reminder', '1 hour', 'x', discount => '{"percent": 10, "valid_for": "-30 days"}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.add_step('reminder', '1 hour', 'x', variants => '[{"name": "a", "when": "true; DROP TABLE rshop.orders"}]');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.add_step('reminder', '1 hour', 'x', variants => '[{"name": "a", "split": 70}, {"name": "b", "split": 40}]');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.add_step('reminder', '1 hour', 'x', variants => '[{"name": "a", "when": "true", "colour": "red"}]');
\echo sqlstate :LAST_ERROR_SQLSTATE
-- a blank variant name, and two variants of one name
SELECT automation.add_step('reminder', '1 hour', 'x', variants => '[{"name": " ", "when": "true"}]');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.add_step('reminder', '1 hour', 'x', variants => '[{"name": "a", "when": "order_count = 0", "template": "x_new"}, {"name": "a", "split": 50, "template": "x_split"}]');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT count(*) AS steps_still_one FROM automation.journey_step;

-- presets: unknown ones and unknown options
SELECT automation.install_preset('black_friday');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('win_back', '{"after_dayz": 30}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('win_back', '{"after_days": "soon"}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('abandoned_cart', '{"first_wait": "banana"}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('thank_you', '{"next_order_discount_percent": 500}');
\echo sqlstate :LAST_ERROR_SQLSTATE
-- a negative count, a number that is not one
SELECT automation.install_preset('abandoned_cart', '{"loyal_orders": -1}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('abandoned_cart', '{"value_threshold": true}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.install_preset('abandoned_cart', '{"value_threshold": "-5"}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT count(*) AS journeys_none FROM automation.journey WHERE name = 'abandoned_cart';

-- the tick: its stages, and a bad now (rolled back: later tests start afresh)
BEGIN;
SELECT stage, rows FROM automation.tick('2026-01-01 00:00+00') ORDER BY stage;
-- a moment before the last tick's: refused before any stage runs
SELECT * FROM automation.tick('2025-12-31 23:00+00');
\echo sqlstate :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT * FROM automation.tick(NULL);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT * FROM automation.tick('infinity');
\echo sqlstate :LAST_ERROR_SQLSTATE

-- a segment a journey enrolls the members of stays while the journey does
SELECT automation.define_segment('big_spenders', 'p.total_spent > 1000');
SELECT automation.create_journey('thanks_big', 'segment_entered', '{"segment": "big_spenders"}');
SELECT automation.drop_segment('big_spenders');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.drop_journey('thanks_big');
SELECT automation.drop_segment('big_spenders');
-- the carts stay bound while an enabled journey reads them
SELECT automation.unbind('carts');
\echo sqlstate :LAST_ERROR_SQLSTATE

-- the reports, when a bound relation is gone: the binding is named
ALTER TABLE rshop.orders RENAME TO orders_gone;
SELECT count(*) FROM automation.journey_stats;
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT count(*) FROM automation.cart_abandonment_stats;
\echo sqlstate :LAST_ERROR_SQLSTATE
ALTER TABLE rshop.orders_gone RENAME TO orders;

-- a step at the preferred hour 02:00 on the night summer time begins in
-- Berlin (02:00 is skipped): due at 03:01 local, it goes then, not a day
-- later; on a normal night, at 02:00
SELECT automation._at_hour('2027-03-28 01:01+00', 'Europe/Berlin', 2) AT TIME ZONE 'UTC' AS skipped_hour,
       automation._at_hour('2027-03-21 00:30+00', 'Europe/Berlin', 2) AT TIME ZONE 'UTC' AS normal_night;

-- a customer whose zone the shop keeps as CET (a zone, and an abbreviation
-- AT TIME ZONE would read as a fixed +01): at 21:30 summer time in July,
-- quiet hours until 08:00, as for Paris
SELECT automation._quiet_end('2027-07-01 19:30+00', 'CET', 21, 8) AT TIME ZONE 'UTC' AS cet,
       automation._quiet_end('2027-07-01 19:30+00', 'Europe/Paris', 21, 8) AT TIME ZONE 'UTC' AS paris;

-- pausing and dropping
SELECT automation.set_journey_enabled('reminder', false);
SELECT name, enabled FROM automation.journey;
SELECT automation.set_journey_enabled('nobody', false);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.set_journey_enabled('reminder', NULL);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.drop_journey(NULL);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT automation.drop_segment(NULL);
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT * FROM automation.segment_members(NULL);
\echo sqlstate :LAST_ERROR_SQLSTATE
-- a cart link that does not say where the cart goes
SET automation.cart_url = 'https://shop.example/cart';
\echo sqlstate :LAST_ERROR_SQLSTATE
SHOW automation.cart_url;
SELECT automation.drop_journey('reminder');
SELECT automation.drop_journey('reminder');

SELECT automation.unbind(k) FROM unnest(ARRAY['customers', 'orders', 'carts']) k;
DROP SCHEMA rshop CASCADE;
