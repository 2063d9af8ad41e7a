-- Quarterly VIP rewards, loyalty milestones, basket tags and campaigns in
-- simulated time.
BEGIN;
SELECT plan(38);

SET LOCAL timezone = 'UTC';
SET LOCAL automation.default_timezone = 'UTC';
SET LOCAL automation.quiet_hours_start = 0;
SET LOCAL automation.quiet_hours_end = 0;
SET LOCAL automation.min_interval = 0;
SET LOCAL automation.max_per_week = 0;
CREATE SCHEMA tshop;
CREATE TABLE tshop.customers (id text PRIMARY KEY, email text, consent boolean, tz text);
CREATE TABLE tshop.products (id text PRIMARY KEY, name text, category text);
CREATE TABLE tshop.orders (id bigint PRIMARY KEY, customer_id text, placed_at timestamptz, total numeric);
CREATE TABLE tshop.order_lines (order_id bigint, product_id text, quantity integer);
INSERT INTO tshop.products VALUES
    ('collar', 'Dog collar', 'dog accessories'), ('leash', 'Dog leash', 'dog accessories'),
    ('puppyfood', 'Puppy food', 'puppy food'), ('bed', 'Dog bed', 'dog beds'), ('mug', 'Mug', 'kitchen');
INSERT INTO tshop.customers VALUES
    ('kim', 'kim@example.com', true, 'Europe/Helsinki'), ('lee', 'lee@example.com', true, 'America/New_York'),
    ('max', 'max@example.com', true, NULL), ('nia', 'nia@example.com', true, NULL),
    ('oli', 'oli@example.com', true, 'Europe/Helsinki'), ('pam', 'pam@example.com', true, 'America/New_York');
-- First quarter of 2026: Kim spends 600, Lee 800, Max 100.
INSERT INTO tshop.orders VALUES
    (1, 'kim', '2026-02-01 10:00+00', 350), (2, 'kim', '2026-03-01 10:00+00', 250),
    (3, 'lee', '2026-02-10 10:00+00', 800), (4, 'max', '2026-02-10 10:00+00', 100),
    (5, 'oli', '2026-01-05 10:00+00', 20), (6, 'pam', '2026-01-05 10:00+00', 20);
INSERT INTO tshop.order_lines VALUES (1, 'mug', 1), (2, 'mug', 1), (3, 'mug', 1), (4, 'mug', 1), (5, 'mug', 1), (6, 'mug', 1);

SELECT automation.bind_customers('tshop.customers', 'id', 'email', 'consent', timezone_column => 'tz');
SELECT automation.bind_orders('tshop.orders', 'customer_id', 'placed_at', 'total', order_id_column => 'id');
SELECT automation.bind_order_lines('tshop.order_lines', 'order_id', 'product_id', 'quantity');
SELECT automation.bind_products('tshop.products', 'id', 'name', 'category');

SELECT is(automation.install_preset('vip_quarterly'), 'vip_quarterly', 'install vip_quarterly with its default tiers');
SELECT is(automation.install_preset('loyalty_points'), 'loyalty_points', 'install loyalty_points (500 points)');
SELECT is(automation.define_basket_rule('new_dog', ARRAY['dog accessories', 'puppy food', 'dog beds'], 2), 'new_dog',
          'define a basket rule: two of three dog categories make a new dog owner');
SELECT automation.create_journey('new_dog', 'tagged', '{"tag": "new_dog"}');
SELECT automation.add_step('new_dog', '0', 'new_dog_tips',
                           variants => '[{"name": "has_bed", "when": "''dog beds'' = ANY (categories) OR ''new_dog'' = ANY (tags) AND order_count > 1", "template": "new_dog_tips_more"}]');

-- The quarter starts: Kim reached 500, Lee 750.
SELECT lives_ok($$SELECT * FROM automation.tick('2026-04-01 01:00+00')$$, 'tick as the second quarter starts');
SELECT results_eq($$SELECT customer_key, payload ->> 'quarter', (payload -> 'gift_card' ->> 'amount')::numeric,
                           (payload ->> 'tier_spend')::numeric
                      FROM automation.outbox WHERE journey = 'vip_quarterly' ORDER BY 1$$,
                  $$VALUES ('kim'::text, '2026Q1'::text, 15::numeric, 500::numeric), ('lee', '2026Q1', 30, 750)$$,
                  'spend of 600 earns a 15 gift card, 800 a 30 one; 100 earns nothing');
SELECT is((SELECT count(DISTINCT payload -> 'gift_card' ->> 'code') FROM automation.outbox WHERE journey = 'vip_quarterly'),
          2::bigint, 'each gift card has its own code');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-04-01 02:00+00'); SELECT * FROM automation.tick('2026-04-02 02:00+00')$$,
                'tick again, and the next day');
SELECT is((SELECT count(*) FROM automation.outbox WHERE journey = 'vip_quarterly'), 2::bigint, 'one reward per customer and quarter');

-- Kim spends 550 in the second quarter; the server is down over 1 July and
-- the first tick is on 20 July.
INSERT INTO tshop.orders VALUES (10, 'kim', '2026-05-15 10:00+00', 550);
INSERT INTO tshop.order_lines VALUES (10, 'mug', 1);
SELECT lives_ok($$SELECT * FROM automation.tick('2026-07-20 09:00+00'); SELECT * FROM automation.tick('2026-07-20 10:00+00')$$,
                'the first ticks of the third quarter come on 20 July');
SELECT results_eq($$SELECT customer_key, payload ->> 'quarter' FROM automation.outbox
                     WHERE journey = 'vip_quarterly' AND payload ->> 'quarter' = '2026Q2'$$,
                  $$VALUES ('kim'::text, '2026Q2'::text)$$,
                  'Kim''s second-quarter reward still comes, once');

-- Loyalty points: one point per unit spent.  Nia reaches 500 with her
-- second order, and is told once.
INSERT INTO tshop.orders VALUES (20, 'nia', '2026-08-01 10:00+00', 300);
INSERT INTO tshop.order_lines VALUES (20, 'mug', 1);
SELECT lives_ok($$SELECT * FROM automation.tick('2026-08-01 12:00+00')$$, 'Nia has 300 points');
SELECT is((SELECT count(*) FROM automation.outbox WHERE journey = 'loyalty_points' AND customer_key = 'nia'), 0::bigint,
          'not yet a milestone');
INSERT INTO tshop.orders VALUES (21, 'nia', '2026-08-10 10:00+00', 250);
INSERT INTO tshop.order_lines VALUES (21, 'mug', 1);
SELECT lives_ok($$SELECT * FROM automation.tick('2026-08-10 12:00+00')$$, 'Nia has 550 points');
INSERT INTO tshop.orders VALUES (22, 'nia', '2026-08-11 10:00+00', 20);
INSERT INTO tshop.order_lines VALUES (22, 'mug', 1);
SELECT lives_ok($$SELECT * FROM automation.tick('2026-08-11 12:00+00')$$, 'and 570 the next day');
SELECT results_eq($$SELECT customer_key, template, (payload ->> 'milestone')::numeric, (payload ->> 'points')::numeric,
                           (payload ->> 'redeem_on_next_order')::boolean
                      FROM automation.outbox WHERE journey = 'loyalty_points'$$,
                  $$VALUES ('nia'::text, 'loyalty_milestone'::text, 500::numeric, 550::numeric, true)$$,
                  'crossing 500 points sends one message; Kim and Lee crossed it long ago, before any tick saw it');

-- Basket rules: Oli buys a collar and puppy food, Pam only a collar (and returns puppy food).
INSERT INTO tshop.orders VALUES (30, 'oli', '2026-09-01 10:00+00', 40), (31, 'pam', '2026-09-01 10:00+00', 20);
INSERT INTO tshop.order_lines VALUES (30, 'collar', 1), (30, 'puppyfood', 1), (31, 'collar', 1), (31, 'puppyfood', -1);
SELECT lives_ok($$SELECT * FROM automation.tick('2026-09-01 12:00+00')$$, 'tick after the dog purchases');
SELECT is(automation.customer_tags('oli'::text), ARRAY['new_dog'], 'Oli is tagged new_dog');
SELECT is(automation.customer_tags('pam'::text), '{}'::text[],
          'Pam is not (one category of three: a line of -1 puppy food, a return, buys nothing)');
SELECT results_eq($$SELECT customer_key, template, payload ->> 'tag' FROM automation.outbox WHERE journey = 'new_dog'$$,
                  $$VALUES ('oli'::text, 'new_dog_tips_more'::text, 'new_dog'::text)$$,
                  'the tagged trigger starts Oli''s journey; the step condition sees his tags');
SELECT automation.define_segment('dog_people', '''new_dog'' = ANY (automation.customer_tags(p.customer_key))');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-09-01 13:00+00')$$, 'tick with a segment on the tag');
SELECT results_eq($$SELECT customer_key FROM automation.segment_member WHERE segment = 'dog_people'$$,
                  $$VALUES ('oli'::text)$$, 'tags are usable in segments');

-- A campaign to the tagged segment plus Pam, at 9:00 in each one's time zone.
SELECT automation.define_segment('campaign_test', 'p.customer_key IN (''oli'', ''pam'')');
SELECT automation.schedule_campaign('dog_days', 'campaign_test', 'dog_days_sale', '{"percent": 20}', '2026-09-10 09:00+00');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-09-09 12:00+00');
                  SELECT * FROM automation.tick('2026-09-10 06:30+00');
                  SELECT * FROM automation.tick('2026-09-10 12:00+00')$$,
                'ticks before 9:00 in Helsinki, after it, and before 9:00 in New York');
SELECT results_eq($$SELECT customer_key, template, send_after FROM automation.outbox WHERE journey = 'dog_days'$$,
                  $$VALUES ('oli'::text, 'dog_days_sale'::text, '2026-09-10 06:30+00'::timestamptz)$$,
                  'Oli in Helsinki has his at 9:00 his time (06:00 UTC); Pam''s 9:00 in New York has not come');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-09-10 13:05+00')$$, '9:05 in New York');
SELECT results_eq($$SELECT customer_key, journey, sent + queued FROM automation.journey_stats s
                      JOIN (SELECT customer_key, journey FROM automation.outbox WHERE journey = 'dog_days') o USING (journey)
                     WHERE o.customer_key = 'pam'$$,
                  $$VALUES ('pam'::text, 'dog_days'::text, 2::bigint)$$,
                  'Pam''s comes at 9:00 hers; journey_stats counts both');

-- A campaign whose moment passed, lookback and all, before the engine's
-- clock would never send: refused.  One still within it is taken.
SELECT throws_ok($$SELECT automation.schedule_campaign('too_late', 'campaign_test', 'x', '{}', '2026-09-07 09:00+00')$$,
                 '22023', NULL, 'a campaign whose members could no longer be enrolled is refused');
SELECT lives_ok($$SELECT automation.schedule_campaign('still_on', 'campaign_test', 'x', '{}', '2026-09-08 12:00+00')$$,
                'one whose lookback has not passed is taken');
-- Oma crosses 500 an hour before a second milestone journey is made (and
-- looked at for the first time): it does not tell her.
INSERT INTO tshop.orders VALUES (130, 'oma', '2026-09-10 13:00+00', 600);
INSERT INTO tshop.order_lines VALUES (130, 'mug', 1);
SELECT automation.install_preset('loyalty_points', '{"journey": "points_later"}');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-09-10 14:00+00')$$, 'a tick after the second journey was made');
SELECT is((SELECT count(*) FROM automation.enrollment WHERE journey = 'loyalty_points' AND customer_key = 'oma'), 1::bigint,
          'the first journey tells Oma');
SELECT is((SELECT count(*) FROM automation.enrollment WHERE journey = 'points_later'), 0::bigint,
          'the second, made after she crossed 500, does not');

-- A rule defined on a shop with history: every customer bought a mug, the
-- last of them on 10 September.  Its tags carry each customer's last
-- order, so a tagged journey on it (lookback 2 days) enrolls none of that
-- history; a segment on the tag, evaluated ten minutes before, takes them
-- in at once all the same (with change capture on, so that the tick
-- after the rule refreshes no profile).  Quinn, who buys a mug after, is
-- enrolled.
SELECT automation.enable_change_capture();
SELECT automation.define_segment('mug_people', '''mug_fan'' = ANY (automation.customer_tags(p.customer_key))');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-09-20 12:00+00')$$, 'a tick with a segment on a tag no rule gives yet');
SELECT automation.define_basket_rule('mug_fan', ARRAY['kitchen'], 1);
SELECT automation.create_journey('mug_fan', 'tagged', '{"tag": "mug_fan"}');
SELECT automation.add_step('mug_fan', '0', 'mug_fan_hello');
SELECT lives_ok($$SELECT * FROM automation.tick('2026-09-20 12:10+00')$$, 'a tick after the rule and its journey were made');
SELECT results_eq($$SELECT customer_key, tagged_at FROM automation.customer_tag WHERE tag = 'mug_fan' AND customer_key IN ('kim', 'nia')
                     ORDER BY 1$$,
                  $$VALUES ('kim'::text, '2026-05-15 10:00+00'::timestamptz), ('nia', '2026-08-11 10:00+00')$$,
                  'a new rule tags the customers who match it already, each at their last order');
SELECT is((SELECT count(*) FROM automation.enrollment WHERE journey = 'mug_fan'), 0::bigint,
          'the tagged journey enrolls none of them: every last order is older than its lookback');
SELECT is((SELECT count(*) FROM automation.segment_member WHERE segment = 'mug_people' AND exited_at IS NULL),
          (SELECT count(*) FROM automation.customer_tag WHERE tag = 'mug_fan'),
          'the segment on the tag takes every customer tagged, though their tags are older than its last evaluation');
INSERT INTO tshop.customers VALUES ('quinn', 'quinn@example.com', true, NULL);
INSERT INTO tshop.orders VALUES (140, 'quinn', '2026-09-20 12:20+00', 12);
INSERT INTO tshop.order_lines VALUES (140, 'mug', 1);
SELECT lives_ok($$SELECT * FROM automation.tick('2026-09-20 12:30+00')$$, 'a tick after Quinn bought a mug');
SELECT results_eq($$SELECT customer_key, template FROM automation.outbox WHERE journey = 'mug_fan'$$,
                  $$VALUES ('quinn'::text, 'mug_fan_hello'::text)$$,
                  'Quinn, tagged by a purchase after the rule, is enrolled and sent the message');

-- A campaign at a clock time reaches a member who never ordered (and has
-- no profile) at that time in the zone the shop keeps for them.
INSERT INTO tshop.customers VALUES ('quy', 'quy@example.com', true, 'Asia/Tokyo');
CREATE TABLE tshop.signups (customer_id text, at timestamptz);
INSERT INTO tshop.signups VALUES ('quy', '2026-09-20 12:35+00');
SELECT automation.bind_signups('tshop.signups', 'customer_id', 'at');
SELECT count(*) FROM automation.tick('2026-09-20 12:40+00');
SELECT automation.schedule_campaign('tokyo_days', 'newsletter_only', 'tokyo_days_sale', '{}', '2026-09-22 09:00+00');
SELECT count(*) FROM automation.tick('2026-09-22 00:05+00');
SELECT results_eq($$SELECT customer_key, send_after FROM automation.outbox WHERE journey = 'tokyo_days'$$,
                  $$VALUES ('quy'::text, '2026-09-22 00:05+00'::timestamptz)$$,
                  'Quy in Tokyo, who never ordered, has it at 9:00 his time (00:00 UTC)');

SELECT * FROM finish();
ROLLBACK;
