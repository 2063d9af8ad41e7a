-- A message's payload as automation._message_payload puts it together (in
-- C, in one pass): the same object as merging its parts with ||, in the
-- same order, a later key replacing an earlier one.
BEGIN;
SELECT plan(9);

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

SELECT is(automation._message_payload(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
          '{"first_name": null, "journey": null, "step": null, "variant": null, "customer_key": null}'::jsonb,
          'all parts missing: the fields every message has, null');

SELECT throws_ok($$SELECT automation._message_payload('[1]', NULL, NULL, NULL, 'j', 1, NULL, '1', '{}', false, NULL, NULL)$$,
                 'XX000', 'the step''s part of a message''s payload is not a JSON object',
                 'a part that is not an object is an internal error (steps and variants are checked when defined)');

SELECT throws_ok($$SELECT automation._message_payload('{}', NULL, '{"payload": 3}', NULL, 'j', 1, NULL, '1', '{}', false, NULL, NULL)$$,
                 'XX000', 'the enrollment''s part of a message''s payload is not a JSON object',
                 'so is an enrollment''s payload that is not an object');

SELECT * FROM finish();
ROLLBACK;
