-- Cross-sell, drip and anniversary presets in simulated time: what was
-- bought decides what comes, and when.
BEGIN;
SELECT plan(22);

SET LOCAL timezone = 'UTC';
SET LOCAL automation.default_timezone = 'UTC';
SET LOCAL automation.quiet_hours_start = 0;
SET LOCAL automation.quiet_hours_end = 0;
SET LOCAL automation.min_interval = 0;
SET LOCAL automation.max_per_week = 0;
CREATE SCHEMA tshop;
CREATE TABLE tshop.customers (id text PRIMARY KEY, email text, consent boolean, birthday date);
CREATE TABLE tshop.products (id text PRIMARY KEY, name text, category text, stock integer);
CREATE TABLE tshop.orders (id bigint PRIMARY KEY, customer_id text, placed_at timestamptz, total numeric,
                           bill_city text, ship_city text);
CREATE TABLE tshop.order_lines (order_id bigint, product_id text, quantity integer);
INSERT INTO tshop.products VALUES
    ('machine', 'Capsule machine', 'coffee machines', 10),
    ('lungo', 'Capsules Lungo', 'coffee capsules', 100),
    ('ristretto', 'Capsules Ristretto', 'coffee capsules', 100),
    ('decaf', 'Capsules Decaf', 'coffee capsules', 0),
    ('phone', 'Smartphone', 'phones', 5),
    ('pillow', 'Memory foam pillow', 'pillows', 5),
    ('sheets', 'Cotton sheet set', 'sheets', 5),
    ('blocks', 'Building blocks (ages 5-7)', 'toys', 5),
    ('puzzle', 'Dinosaur puzzle', 'toys', 5),
    ('scooter', 'Kick scooter', 'toys', 5);
INSERT INTO tshop.customers VALUES
    ('dan', 'dan@example.com', true, NULL), ('eve', 'eve@example.com', true, NULL),
    ('fay', 'fay@example.com', true, NULL), ('gus', 'gus@example.com', true, NULL),
    ('hal', 'hal@example.com', true, NULL), ('ivy', 'ivy@example.com', true, NULL),
    ('jon', 'jon@example.com', true, '1990-06-15'), ('kai', 'kai@example.com', false, '1985-06-15');
-- Popular capsules: Ristretto sells best.
INSERT INTO tshop.orders SELECT 900 + i, 'ivy', timestamptz '2026-03-20 10:00+00' + i * interval '1 minute', 4, 'Oulu', 'Oulu'
  FROM generate_series(1, 3) i;
INSERT INTO tshop.order_lines VALUES (901, 'ristretto', 5), (902, 'ristretto', 5), (903, 'lungo', 1);
INSERT INTO tshop.orders VALUES
    (1, 'dan', '2026-04-01 10:00+00', 129, 'Espoo', 'Espoo'),
    (2, 'eve', '2026-04-01 10:00+00', 129, 'Espoo', 'Espoo'),
    (3, 'fay', '2026-04-01 10:00+00', 499, 'Espoo', 'Espoo'),
    (4, 'gus', '2026-04-01 10:00+00', 49, 'Espoo', 'Espoo'),
    (5, 'hal', '2026-01-10 10:00+00', 35, 'Espoo', 'Turku'),
    (6, 'ivy', '2026-01-10 10:00+00', 35, 'Oulu', 'Oulu');
INSERT INTO tshop.order_lines VALUES
    (1, 'machine', 1), (2, 'machine', 1), (3, 'phone', 1), (4, 'pillow', 2), (5, 'blocks', 1), (6, 'sheets', 1);

SELECT automation.bind_customers('tshop.customers', 'id', 'email', 'consent', birth_date_column => 'birthday');
SELECT automation.bind_orders('tshop.orders', 'customer_id', 'placed_at', 'total', order_id_column => 'id',
                              ship_to_column => 'ship_city', bill_to_column => 'bill_city');
SELECT automation.bind_order_lines('tshop.order_lines', 'order_id', 'product_id', 'quantity');
SELECT automation.bind_products('tshop.products', 'id', 'name', 'category', stock_column => 'stock');

SELECT is(automation.install_preset('cross_sell', $${"rules": [
              {"name": "capsules", "bought": {"categories": ["coffee machines"]}, "after": "14 days",
               "template": "cross_sell_capsules", "recommend": {"categories": ["coffee capsules"]}, "discount_percent": 10},
              {"name": "phone_upgrade", "bought": {"products": ["phone"]}, "after": "2 years",
               "template": "upgrade_offer", "discount_percent": 15}]}$$),
          'cross_sell_capsules, cross_sell_phone_upgrade', 'cross_sell installs one journey per rule');
SELECT is(automation.install_preset('drip'), 'drip', 'drip installs with its pillow example');
SELECT is(automation.install_preset('anniversary', '{"gift_categories": ["toys"]}'), 'anniversary, anniversary_birthday',
          'anniversary installs the gift journey and, with a birth date bound, the birthday one');

-- Everything is enrolled as it happens (Hal's gift long before).
SELECT lives_ok($$SELECT * FROM automation.tick('2026-01-10 12:00+00')$$, 'tick on Hal''s gift day');
SELECT results_eq($$SELECT subject, context ->> 'gift_reason' FROM automation.enrollment WHERE journey = 'anniversary'$$,
                  $$VALUES ('order:5'::text, 'shipped_elsewhere'::text)$$,
                  'Hal''s toy shipped to another city is a gift; Ivy''s sheets at home are not');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-04-01 12:00+00')$$, 'tick on the day of the purchases');
SELECT results_eq($$SELECT journey, customer_key FROM automation.enrollment
                     WHERE journey IN ('cross_sell_capsules', 'cross_sell_phone_upgrade', 'drip') ORDER BY 1, 2$$,
                  $$VALUES ('cross_sell_capsules'::text, 'dan'::text), ('cross_sell_capsules', 'eve'),
                           ('cross_sell_phone_upgrade', 'fay'), ('drip', 'gus')$$,
                  'machine buyers, the phone buyer and the pillow buyer are enrolled');

-- Eve buys capsules herself before the 14 days are up.
INSERT INTO tshop.orders VALUES (7, 'eve', '2026-04-05 10:00+00', 4, 'Espoo', 'Espoo');
INSERT INTO tshop.order_lines VALUES (7, 'lungo', 1);

-- Drip: care tips after 2 days, sleep tips 5 days later, the offer 7 days after that.
SELECT lives_ok($$SELECT * FROM automation.tick('2026-04-03 12:00+00')$$, 'two days later');
SELECT is((SELECT string_agg(template, ',' ORDER BY id) FROM automation.outbox WHERE customer_key = 'gus'),
          'drip_care_tips', 'Gus gets care tips for his pillow');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-04-08 12:00+00')$$, 'a week later');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-04-15 12:00+00')$$, 'two weeks later');
SELECT is((SELECT string_agg(template, ',' ORDER BY id) FROM automation.outbox WHERE customer_key = 'gus'),
          'drip_care_tips,drip_sleep_tips,drip_offer', 'then sleep tips, then the offer');
SELECT is((SELECT payload -> 'recommended' -> 0 ->> 'product' FROM automation.outbox WHERE template = 'drip_offer'),
          'sheets', 'the offer recommends a sheet set for his pillow');

-- Cross-sell after 14 days: capsules for Dan, best sellers first, none out
-- of stock; Eve already bought capsules.
SELECT results_eq($$SELECT customer_key, template, payload -> 'recommended', (payload -> 'discount' ->> 'percent')::numeric
                      FROM automation.outbox WHERE journey = 'cross_sell_capsules'$$,
                  $$VALUES ('dan'::text, 'cross_sell_capsules'::text,
                            '[{"name": "Capsules Ristretto", "price": null, "product": "ristretto"},
                              {"name": "Capsules Lungo", "price": null, "product": "lungo"}]'::jsonb, 10::numeric)$$,
                  'Dan is offered capsules 14 days after his machine, best sellers first, with 10 % off');
SELECT is((SELECT exit_reason FROM automation.enrollment WHERE journey = 'cross_sell_capsules' AND customer_key = 'eve'),
          'bought', 'Eve bought capsules since: she is not offered what she already has');

-- Hal's gift, eleven months on (the journey has waited since January 2026).
SELECT lives_ok($$SELECT * FROM automation.tick('2026-12-10 12:00+00')$$, 'eleven months after the gift');
SELECT results_eq($$SELECT customer_key, template, payload -> 'category_products' FROM automation.outbox WHERE journey = 'anniversary'$$,
                  $$VALUES ('hal'::text, 'gift_anniversary'::text,
                            '[{"name": "Dinosaur puzzle", "price": null, "product": "puzzle", "category": "toys"},
                              {"name": "Kick scooter", "price": null, "product": "scooter", "category": "toys"}]'::jsonb)$$,
                  'Hal is asked whether a birthday is coming, with other toys');

-- The upgrade offer, two years on.
SELECT lives_ok($$SELECT * FROM automation.tick('2028-04-01 12:00+00')$$, 'two years later');
SELECT results_eq($$SELECT customer_key, template, (payload -> 'discount' ->> 'percent')::numeric
                      FROM automation.outbox WHERE journey = 'cross_sell_phone_upgrade'$$,
                  $$VALUES ('fay'::text, 'upgrade_offer'::text, 15::numeric)$$,
                  'Fay gets a 15 % upgrade offer two years after her phone');

-- Birthdays: a week before, once a year.
SELECT lives_ok($$SELECT * FROM automation.tick('2028-06-08 12:00+00'); SELECT * FROM automation.tick('2028-06-08 13:00+00')$$,
                'two ticks a week before 15 June');
SELECT results_eq($$SELECT customer_key, template, payload ->> 'birthday' FROM automation.outbox WHERE journey = 'anniversary_birthday'$$,
                  $$VALUES ('jon'::text, 'birthday'::text, '2028-06-15'::text)$$,
                  'Jon is greeted once; Kai gave no consent');

-- A birthday begins at midnight in the customer's own zone: in Auckland
-- half a day before UTC's, in Los Angeles seven hours after.
ALTER TABLE tshop.customers ADD COLUMN tz text;
INSERT INTO tshop.customers (id, email, consent, birthday, tz) VALUES
    ('ana', 'ana@example.com', true, '1990-07-02', 'Pacific/Auckland'),
    ('lou', 'lou@example.com', true, '1990-07-02', 'America/Los_Angeles');
SELECT automation.bind_customers('tshop.customers', 'id', 'email', 'consent', birth_date_column => 'birthday',
                                 timezone_column => 'tz');
SELECT automation.create_journey('bday_local', 'birthday', '{"days_before": 0}');
SELECT automation.add_step('bday_local', '0', 'happy_birthday');
SELECT count(*) FROM automation.tick('2028-07-01 00:30+00');
SELECT count(*) FROM automation.tick('2028-07-01 12:30+00');
SELECT count(*) FROM automation.tick('2028-07-02 00:30+00');
SELECT count(*) FROM automation.tick('2028-07-02 07:30+00');
SELECT results_eq($$SELECT customer_key, send_after FROM automation.outbox WHERE journey = 'bday_local' ORDER BY 1$$,
                  $$VALUES ('ana'::text, '2028-07-01 12:30+00'::timestamptz), ('lou', '2028-07-02 07:30+00')$$,
                  'each is greeted on the birthday in their own zone: Ana in Auckland, Lou in Los Angeles');

SELECT * FROM finish();
ROLLBACK;
