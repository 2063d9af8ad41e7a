-- A message's payload as automation._message_payload puts it together (in
-- C, in one pass): the same object as merging its parts with ||, in the
-- same order, a later key replacing an earlier one.  And a cart's lines as
-- automation._cart_lines gathers them: the same array as jsonb_agg of
-- jsonb_build_object.  And a trigger's context as automation._object builds
-- it: the same object as jsonb_build_object.
BEGIN;
SELECT plan(20);

-- The reference: the parts merged with || and built with jsonb_build_object.
CREATE FUNCTION pg_temp.merged(payload jsonb, variant_payload jsonb, context jsonb, first_name text, journey text,
                               step integer, variant text, customer_key text, extra jsonb, with_cart boolean,
                               cart_url text, cart_lines jsonb)
RETURNS jsonb LANGUAGE sql AS $$
    SELECT payload || coalesce(variant_payload, '{}') || coalesce(context -> 'payload', '{}')
           || jsonb_build_object('first_name', first_name, 'journey', journey, 'step', step, 'variant', variant,
                                 'customer_key', customer_key)
           || extra
           || CASE WHEN with_cart THEN jsonb_build_object('cart', jsonb_build_object(
                      'cart_id', context -> 'cart_id', 'total', context -> 'cart_total', 'stage', context -> 'stage',
                      'url', replace(cart_url, '{cart_id}', context ->> 'cart_id'),
                      'lines', coalesce(cart_lines, '[]'))) ELSE '{}' END
$$;

SELECT is(automation._message_payload('{"a": 1, "b": 1}', '{"b": 2, "c": 2}', '{"payload": {"c": 3, "d": 3}}',
                                      'Ada', 'welcome', 2, 'B', '42', '{"d": 4, "e": [1, {"f": 5}]}', false, NULL, NULL),
          '{"a": 1, "b": 2, "c": 3, "d": 4, "e": [1, {"f": 5}], "first_name": "Ada", "journey": "welcome",
            "step": 2, "variant": "B", "customer_key": "42"}'::jsonb,
          'each part replaces the keys of the parts before it: step, variant, enrollment, extras');

SELECT is(automation._message_payload('{"first_name": "Step", "journey": "x"}', NULL, '{}', NULL, 'welcome', 1, NULL,
                                      '7', '{"first_name": "Extra"}', false, NULL, NULL),
          '{"first_name": "Extra", "journey": "welcome", "step": 1, "variant": null, "customer_key": "7"}'::jsonb,
          'the fields every message has replace the step''s, and the extras replace them; a missing one is null');

SELECT is(automation._message_payload('{}', NULL, '{"cart_id": 17, "cart_total": 90.50, "stage": "shipping"}',
                                      'Bob', 'abandoned_cart', 1, 'free_shipping', '2', '{}', true,
                                      'https://shop.example/cart/{cart_id}',
                                      '[{"product": 2, "quantity": 1, "name": "Coffee machine", "price": 150.00, "only_left": 3}]'),
          '{"first_name": "Bob", "journey": "abandoned_cart", "step": 1, "variant": "free_shipping", "customer_key": "2",
            "cart": {"cart_id": 17, "total": 90.50, "stage": "shipping", "url": "https://shop.example/cart/17",
                     "lines": [{"product": 2, "quantity": 1, "name": "Coffee machine", "price": 150.00, "only_left": 3}]}}'::jsonb,
          'the cart: its id, total and stage from the enrollment, its restore link and its lines');

SELECT is(automation._message_payload('{}', NULL, '{"cart_id": "c-9"}', NULL, 'j', 1, NULL, '3', '{}', true, NULL, NULL)
              -> 'cart',
          '{"cart_id": "c-9", "total": null, "stage": null, "url": null, "lines": []}'::jsonb,
          'a cart without lines, link setting or stage: an empty list and nulls');

SELECT is(automation._message_payload('{}', NULL, '{"cart_id": "c-9"}', NULL, 'j', 1, NULL, '3', '{}', true,
                                      'https://shop.example/restore?cart={cart_id}&again={cart_id}', NULL) #>> '{cart,url}',
          'https://shop.example/restore?cart=c-9&again=c-9',
          'every {cart_id} in automation.cart_url is replaced by the cart''s id');

-- The same as the reference on the shapes the steps stage passes.
CREATE TEMP TABLE part (payload jsonb, variant_payload jsonb, context jsonb, first_name text, extra jsonb,
                        with_cart boolean, cart_url text, cart_lines jsonb);
INSERT INTO part VALUES
    ('{}', NULL, '{}', 'Ada', '{}', false, '', NULL),
    ('{"template_hint": "x", "n": 1.50}', '{"loyalty_discount_percent": 10}', '{"order_id": 5, "payload": {"replenish": {"product": "1"}}}',
     NULL, '{"discount": {"code": "A-1", "percent": 10}}', false, NULL, NULL),
    ('{"reviews": true}', NULL, '{"cart_id": 1, "cart_total": 5, "stage": null}', 'Cy', '{"also_like": []}', true,
     'https://s/{cart_id}', '[{"product": 1, "quantity": 2, "name": null, "price": null, "only_left": null}]'),
    ('{}', '{}', '{"cart_id": true}', 'Dee', '{}', true, 'u/{cart_id}', NULL),
    ('{}', NULL, NULL, 'Eve', '{}', false, NULL, NULL);
SELECT is((SELECT count(*) FROM part p
            WHERE automation._message_payload(p.payload, p.variant_payload, p.context, p.first_name, 'j', 3, 'v', '9',
                                              p.extra, p.with_cart, p.cart_url, p.cart_lines)
                  IS DISTINCT FROM pg_temp.merged(p.payload, p.variant_payload, p.context, p.first_name, 'j', 3, 'v', '9',
                                                  p.extra, p.with_cart, p.cart_url, p.cart_lines)),
          0::bigint, 'the same object as the parts merged with ||, for every shape the steps stage passes');

-- The payload is written in jsonb's binary form directly (the parts'
-- objects and arrays copied as they are): with more members than jsonb
-- stores a length for (it stores an offset every 32nd), numbers, strings,
-- nested containers, and keys of every length, every member is found where
-- jsonb looks for it, and the object is the one || builds.
INSERT INTO part
SELECT jsonb_object_agg(repeat('k', i % 7 + 1) || i,
                        CASE i % 5 WHEN 0 THEN to_jsonb(i * 1.5) WHEN 1 THEN to_jsonb('s' || i) WHEN 2 THEN jsonb_build_array(i, 'x', NULL)
                                   WHEN 3 THEN jsonb_build_object('n', i, 'm', jsonb_build_object('deep', true)) ELSE 'null' END),
       (SELECT jsonb_object_agg('k' || i, i) FROM generate_series(1, 40, 3) i),
       '{"cart_id": 5, "cart_total": 1e3, "stage": "payment", "payload": {"k2": "own", "z": [1, 2]}}', 'Fay',
       (SELECT jsonb_object_agg('x' || i, repeat('v', i)) FROM generate_series(1, 20) i), true, 'c/{cart_id}/{cart_id}',
       '[{"name": "A", "price": 1.10}, {"name": "B", "price": 2}]'
  FROM generate_series(1, 60) i;
SELECT is((SELECT count(*) FROM part p
            WHERE automation._message_payload(p.payload, p.variant_payload, p.context, p.first_name, 'j', 3, 'v', '9',
                                              p.extra, p.with_cart, p.cart_url, p.cart_lines)::text
                  IS DISTINCT FROM pg_temp.merged(p.payload, p.variant_payload, p.context, p.first_name, 'j', 3, 'v', '9',
                                                  p.extra, p.with_cart, p.cart_url, p.cart_lines)::text
               OR pg_column_size(automation._message_payload(p.payload, p.variant_payload, p.context, p.first_name, 'j', 3,
                                                             'v', '9', p.extra, p.with_cart, p.cart_url, p.cart_lines))
                  <> pg_column_size(pg_temp.merged(p.payload, p.variant_payload, p.context, p.first_name, 'j', 3, 'v', '9',
                                                   p.extra, p.with_cart, p.cart_url, p.cart_lines))),
          0::bigint, 'with about 100 members, nested objects and arrays: the same object as || builds, to the text and the byte');
SELECT is((SELECT count(*)
             FROM part p
            CROSS JOIN LATERAL (SELECT automation._message_payload(p.payload, p.variant_payload, p.context, p.first_name,
                                                                   'j', 3, 'v', '9', p.extra, p.with_cart, p.cart_url,
                                                                   p.cart_lines) AS x) y
            CROSS JOIN LATERAL jsonb_each(y.x) e
            WHERE y.x -> e.key IS DISTINCT FROM e.value
               OR NOT (y.x ? e.key)
               OR (e.key = 'cart' AND (y.x #> '{cart,lines}') IS DISTINCT FROM coalesce(p.cart_lines, '[]'))),
          0::bigint, 'every member is found by its key, the cart''s lines within the cart');

SELECT is(automation._message_payload(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
          '{"first_name": null, "journey": null, "step": null, "variant": null, "customer_key": null}'::jsonb,
          'all parts missing: the fields every message has, null');

SELECT throws_ok($$SELECT automation._message_payload('[1]', NULL, NULL, NULL, 'j', 1, NULL, '1', '{}', false, NULL, NULL)$$,
                 'XX000', 'the step''s part of a message''s payload is not a JSON object',
                 'a part that is not an object is an internal error (steps and variants are checked when defined)');

SELECT throws_ok($$SELECT automation._message_payload('{}', NULL, '{"payload": 3}', NULL, 'j', 1, NULL, '1', '{}', false, NULL, NULL)$$,
                 'XX000', 'the enrollment''s part of a message''s payload is not a JSON object',
                 'so is an enrollment''s payload that is not an object');

-- The cart's lines: every kind of value a bound column may hold, as
-- to_jsonb makes it.
CREATE DOMAIN pg_temp.quantity AS integer CHECK (VALUE >= 0);
CREATE TEMP TABLE line (cart integer, product text, quantity pg_temp.quantity, name text, price numeric, stock integer,
                        i2 smallint, i8 bigint, f4 real, f8 double precision, b boolean, d date, ts timestamp,
                        tstz timestamptz, j json, jb jsonb, u uuid, v varchar(20));
INSERT INTO line VALUES
    (1, 'p-1', 2, 'Dog food', 40.00, 3, 1, 9007199254740993, 0.1, 0.1, true, '2026-11-01', '2026-11-01 12:00',
     '2026-11-01 12:00+02', '{"a": [1, "x"]}', '{"b": null}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'vc'),
    (1, 'p-2', 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (2, 'p-3', 0, 'Vitamins "100"', 'NaN', -1, -32768, -1, 'NaN', 'Infinity', false, 'infinity', '-infinity',
     'infinity', '3', '"s"', NULL, ''),
    (3, 'p-4', 5, 'Ü ñ', '1e-20', 0, 0, 0, '-Infinity', 1e300, NULL, NULL, NULL, NULL, 'null', '[]', NULL, NULL);
-- (a cart of 40 lines: jsonb stores an offset for every 32nd element)
INSERT INTO line (cart, product, quantity, name, price, stock)
SELECT 4, 'q-' || lpad(i::text, 2, '0'), i % 3, repeat('n', i % 9), i * 0.25, CASE WHEN i % 4 = 0 THEN i END
  FROM generate_series(1, 40) i;
SELECT is((SELECT count(*) FROM (
              SELECT automation._cart_lines(l.product, l.quantity, l.name, l.price, l.stock) AS ours,
                     jsonb_agg(jsonb_build_object('product', l.product, 'quantity', l.quantity, 'name', l.name,
                                                  'price', l.price, 'only_left', l.stock)) AS theirs
                FROM (SELECT * FROM line ORDER BY cart, product) l GROUP BY l.cart) x
            WHERE ours::text IS DISTINCT FROM theirs::text OR pg_column_size(ours) <> pg_column_size(theirs)
               OR ours -> 0 IS DISTINCT FROM theirs -> 0 OR ours -> -1 -> 'name' IS DISTINCT FROM theirs -> -1 -> 'name'
               OR ours #> '{35,price}' IS DISTINCT FROM theirs #> '{35,price}'),
          0::bigint, 'the lines, in the order they come, as jsonb_agg of jsonb_build_object gives them, to the byte');
SELECT is((SELECT count(*) FROM (
              SELECT automation._cart_lines(l.i2, l.i8, l.f4, l.f8, l.b) AS a1,
                     jsonb_agg(jsonb_build_object('product', l.i2, 'quantity', l.i8, 'name', l.f4, 'price', l.f8,
                                                  'only_left', l.b)) AS b1,
                     automation._cart_lines(l.d, l.ts, l.tstz, l.u, l.v) AS a2,
                     jsonb_agg(jsonb_build_object('product', l.d, 'quantity', l.ts, 'name', l.tstz, 'price', l.u,
                                                  'only_left', l.v)) AS b2,
                     automation._cart_lines(l.j, l.jb, l.quantity, l.j, l.jb) AS a3,
                     jsonb_agg(jsonb_build_object('product', l.j, 'quantity', l.jb, 'name', l.quantity, 'price', l.j,
                                                  'only_left', l.jb)) AS b3
                FROM (SELECT * FROM line ORDER BY cart, product) l GROUP BY l.cart) x
            WHERE a1::text IS DISTINCT FROM b1::text OR a2::text IS DISTINCT FROM b2::text
               OR a3::text IS DISTINCT FROM b3::text),
          0::bigint, 'integers, floats and their NaN and infinities, booleans, dates and times, JSON, uuid, a domain');
SELECT is((SELECT automation._cart_lines(x, ARRAY[1, 2], ROW(1, 'a'), NULL::text, 1) FROM (VALUES (1)) v (x)),
          '[{"name": "(1,a)", "price": null, "product": 1, "quantity": "{1,2}", "only_left": 1}]'::jsonb,
          'an array or a composite value is written as its text');
SELECT is((SELECT automation._cart_lines(l.product, l.quantity, l.name, l.price, l.stock) FROM line l WHERE false),
          NULL, 'no lines: NULL, as jsonb_agg');

-- A trigger's context: every kind of value a bound column may hold, as
-- jsonb_build_object builds it (keys of any type as their text, a later
-- value of a key replacing an earlier one).
SELECT is((SELECT count(*) FROM line l
            WHERE automation._object('product', l.product, 'quantity', l.quantity, 'name', l.name, 'price', l.price,
                                     'stock', l.stock, 'i2', l.i2, 'i8', l.i8, 'f4', l.f4, 'f8', l.f8, 'b', l.b)::text
                  IS DISTINCT FROM jsonb_build_object('product', l.product, 'quantity', l.quantity, 'name', l.name,
                                                      'price', l.price, 'stock', l.stock, 'i2', l.i2, 'i8', l.i8,
                                                      'f4', l.f4, 'f8', l.f8, 'b', l.b)::text
               OR automation._object('d', l.d, 'ts', l.ts, 'tstz', l.tstz, 'j', l.j, 'jb', l.jb, 'u', l.u, 'v', l.v,
                                     l.cart, l.product, l.product, l.i8, l.cart + 0.5, l.d)::text
                  IS DISTINCT FROM jsonb_build_object('d', l.d, 'ts', l.ts, 'tstz', l.tstz, 'j', l.j, 'jb', l.jb,
                                                      'u', l.u, 'v', l.v, l.cart, l.product, l.product, l.i8,
                                                      l.cart + 0.5, l.d)::text),
          0::bigint, 'a context: the same object as jsonb_build_object, for every kind of value and key');
SELECT is(automation._object('cart_id', 7::bigint, 'cart_total', 12.50, 'stage', NULL::text, 'cart_id', 8),
          '{"cart_id": 8, "cart_total": 12.50, "stage": null}'::jsonb,
          'a later value of a key replaces an earlier one; a number keeps its scale');
SELECT throws_ok($$SELECT automation._object('cart_id', 1, 'stage')$$, '22023',
                 'automation._object takes keys and values in pairs, not 3 arguments',
                 'a key without its value is refused');
SELECT throws_ok($$SELECT automation._object(NULL::text, 1)$$, '22004',
                 'argument 1 of automation._object is a key, and must not be null',
                 'a null key is refused');
SELECT throws_ok($$SELECT automation._object(VARIADIC ARRAY['a', 'b'])$$, '0A000',
                 'automation._object takes its keys and values as arguments, not as an array',
                 'keys and values as one array are refused');

SELECT * FROM finish();
ROLLBACK;
