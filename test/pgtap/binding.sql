-- Binding: keys of any hashable type, what the extension stores joins back
-- to the shop's customers without casts, and the shop's tables are never
-- altered.
BEGIN;
SELECT plan(25);

CREATE SCHEMA kshop;
CREATE TABLE kshop.customers (id uuid PRIMARY KEY, email text, consent boolean);
CREATE TABLE kshop.orders (id bigint, customer_id uuid, placed_at timestamptz, total numeric, status text);
CREATE TABLE kshop.members (handle varchar(40) PRIMARY KEY, email text, consented_at timestamptz);
CREATE TABLE kshop.signups (customer_id uuid, at timestamptz);
INSERT INTO kshop.signups VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2026-03-10 11:59+00');
INSERT INTO kshop.customers VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'ada@example.com', true);

-- What the shop's schema looks like before anything is bound.
CREATE TEMP TABLE shop_shape AS
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type,
       (SELECT count(*) FROM pg_trigger t WHERE t.tgrelid = c.oid) AS triggers,
       (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid) AS indexes
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
 WHERE c.relnamespace = 'kshop'::regnamespace AND a.attnum > 0;

-- A stand-in for the extension's per-customer tables (profiles, outbox, ...):
-- created with a text key, with a view over it that an analyst may read.
CREATE TABLE automation.probe (customer_key text, note text);
INSERT INTO automation.probe VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'stored before binding');
CREATE VIEW automation.probe_view AS SELECT customer_key, note FROM automation.probe;
CREATE ROLE regress_probe_reader;
GRANT SELECT ON automation.probe_view TO regress_probe_reader;

SELECT is(automation.customer_key_type(), NULL, 'nothing bound: no customer key type');

SELECT lives_ok($$SELECT automation.bind_customers('kshop.customers', 'id', 'email', 'consent')$$,
                'bind customers keyed by uuid');
SELECT is(automation.customer_key_type(), 'uuid'::regtype, 'the customer key type is uuid');
SELECT col_type_is('automation', 'probe', 'customer_key', 'uuid',
                   'the extension''s customer_key columns take the shop''s key type');
SELECT is((SELECT c.email FROM automation.probe p JOIN kshop.customers c ON c.id = p.customer_key),
          'ada@example.com', 'stored keys join back to the shop''s customers without casts');
SELECT col_type_is('automation', 'probe_view', 'customer_key', 'uuid', 'views over the key follow it');
SELECT ok(has_table_privilege('regress_probe_reader', 'automation.probe_view', 'SELECT'),
          'views keep their grants');

SELECT lives_ok($$SELECT automation.bind_orders('kshop.orders', 'customer_id', 'placed_at', 'total',
                     order_id_column => 'id', status_column => 'status', counted_statuses => ARRAY['paid', 'shipped'])$$,
                'bind orders with counted statuses');
SELECT is((SELECT options FROM automation.bindings WHERE kind = 'orders'),
          '{"counted_statuses": ["paid", "shipped"]}'::jsonb, 'counted statuses are stored');
SELECT throws_ok($$SELECT automation.bind_signups('kshop.orders', 'id', 'placed_at')$$, '42804', NULL,
                 'a bigint customer key is refused while customers are keyed by uuid');

-- A journey whose first step is due at once: the tick holds such new
-- enrollments in a table of its session until the step has run; that table
-- follows the key type too, also within one session.
SELECT automation.bind_signups('kshop.signups', 'customer_id', 'at');
SELECT automation.create_journey('hello', 'signup', purpose => 'transactional', exit_on => '{}');
SELECT automation.add_step('hello', '0', 'hello');
SELECT count(*) FROM automation.tick('2026-03-10 12:00+00');
SELECT results_eq($$SELECT customer_key::text, status FROM automation.enrollment WHERE journey = 'hello'$$,
                  $$VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'completed')$$,
                  'a uuid-keyed customer signs up and is enrolled, step done, in one tick');
SELECT is((SELECT count(*) FROM automation.outbox WHERE journey = 'hello'
            AND customer_key = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'), 1::bigint, 'and gets the message');
-- The shop's sign-ups stay bound while an enabled journey enrolls them:
-- unbound, every tick would fail on it.
SELECT throws_ok($$SELECT automation.unbind('signups')$$, '2BP01', 'cannot unbind the shop''s signups: enabled journeys need them',
                 'a binding an enabled journey''s trigger reads cannot be unbound');
SELECT throws_ok($$SELECT automation.unbind('customers')$$, '2BP01', NULL,
                 'nor the customers, to whom every journey writes');
SELECT automation.set_journey_enabled('hello', false);
SELECT is(automation.unbind('signups'), true, 'with the journey disabled it can');
DELETE FROM automation.outbox_key;
DELETE FROM automation.outbox;
DELETE FROM automation.enrollment;

-- Moving to another key type: unbind, then bind the new shape.
SELECT lives_ok($$SELECT automation.unbind('orders'); SELECT automation.unbind('customers')$$, 'unbind both');
SELECT col_type_is('automation', 'probe', 'customer_key', 'text', 'with nothing bound the key is text again');
DELETE FROM automation.probe;
INSERT INTO automation.probe VALUES ('ada', 'keyed by handle');
SELECT lives_ok($$SELECT automation.bind_customers('kshop.members', 'handle', 'email', 'consented_at')$$,
                'bind customers keyed by varchar, consent as a timestamp');
SELECT col_type_is('automation', 'probe', 'customer_key', 'character varying',
                   'the key column follows to varchar');

SELECT automation.bind_signups('kshop.members', 'handle', 'consented_at');
SELECT automation.set_journey_enabled('hello', true);
INSERT INTO kshop.members VALUES ('ada', 'ada@example.com', '2026-03-10 12:59+00');
SELECT count(*) FROM automation.tick('2026-03-10 13:00+00');
SELECT results_eq($$SELECT customer_key::text, status FROM automation.enrollment WHERE journey = 'hello'$$,
                  $$VALUES ('ada', 'completed')$$,
                  'the same session ticks again with varchar keys: enrolled, step done');
SELECT is((SELECT recipient FROM automation.outbox WHERE journey = 'hello' AND customer_key = 'ada'),
          'ada@example.com', 'and the message goes to the member');

SELECT is_empty($$
    SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
           (SELECT count(*) FROM pg_trigger t WHERE t.tgrelid = c.oid),
           (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid)
      FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
     WHERE c.relnamespace = 'kshop'::regnamespace AND a.attnum > 0
    EXCEPT SELECT * FROM shop_shape$$, 'the shop''s tables are exactly as they were');
SELECT is((SELECT count(*) FROM kshop.customers), 1::bigint, 'and so is their data');

-- A bound column renamed under a binding: the tick names the binding, with
-- the statement's own error as detail, and rolls back whole.
ALTER TABLE kshop.members RENAME COLUMN consented_at TO consent_at;
SELECT throws_ok($$SELECT * FROM automation.tick('2026-03-10 13:05+00')$$, '55000',
                 'the shop''s customers no longer fit their binding: column consented_at of kshop.members does not exist',
                 'a tick after a bound column was renamed names the binding');
ALTER TABLE kshop.members RENAME COLUMN consent_at TO consented_at;
SELECT lives_ok($$SELECT * FROM automation.tick('2026-03-10 13:05+00')$$, 'and ticks again once it is back');

SELECT * FROM finish();
ROLLBACK;
