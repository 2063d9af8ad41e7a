-- Presets: the classic e-commerce flows, each one call.  They are built
-- with create_journey and add_step like any journey, and can be changed or
-- dropped afterwards like any journey.  Every number is an option.

-- _preset_options(preset, given, defaults): the defaults overlaid with the
-- options given; an option the preset does not have is an error.
CREATE FUNCTION automation._preset_options(preset text, given jsonb, defaults jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k text;
BEGIN
    IF given IS NULL OR jsonb_typeof(given) <> 'object' THEN
        RAISE EXCEPTION 'options must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR k IN SELECT jsonb_object_keys(given) LOOP
        IF NOT defaults ? k THEN
            RAISE EXCEPTION 'preset % has no option "%"', preset, k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Its options are: ' || (SELECT string_agg(x, ', ' ORDER BY x) FROM jsonb_object_keys(defaults) x) || '.';
        END IF;
    END LOOP;
    RETURN defaults || given;
END
$$;

-- install_preset(name, options): creates the preset's journey, named after
-- the preset unless options say "journey".  Returns the journey's name.
CREATE FUNCTION automation.install_preset(name text, options jsonb DEFAULT '{}')
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o jsonb;
    j text;
    presets text[] := ARRAY['abandoned_cart', 'welcome', 'thank_you', 'feedback', 'win_back'];
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'name must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    CASE name
    WHEN 'abandoned_cart' THEN
        o := automation._preset_options(name, options, jsonb_build_object(
            'journey', name, 'idle', '1 hour', 'first_wait', '4 hours', 'second_wait', '20 hours',
            'value_threshold', 100, 'discount_percent', 10, 'discount_valid_for', '24 hours',
            'loyal_orders', 3, 'holdout_percent', 0));
        j := automation.create_journey(o ->> 'journey', 'cart_abandoned', jsonb_build_object('idle', o ->> 'idle'),
                                       holdout_percent => (o ->> 'holdout_percent')::numeric,
                                       exit_on => ARRAY['converted', 'ordered'],
                                       description => 'reminds a customer of the cart they left, twice');
        PERFORM automation.add_step(j, (o ->> 'first_wait')::interval, 'cart_reminder',
            includes => ARRAY['cart'], valid_for => interval '1 day',
            variants => jsonb_build_array(
                jsonb_build_object('name', 'shipping_step', 'when', 'checkout_stage = ''shipping''',
                                   'template', 'cart_reminder_free_shipping', 'payload', '{"free_shipping": true}'::jsonb),
                jsonb_build_object('name', 'new_customer', 'when', 'order_count = 0',
                                   'template', 'cart_reminder_trust', 'payload', '{"free_returns": true}'::jsonb),
                jsonb_build_object('name', 'loyal_customer', 'when', format('order_count >= %s', (o ->> 'loyal_orders')::int),
                                   'template', 'cart_reminder_loyalty',
                                   'payload', jsonb_build_object('loyalty_discount_percent', (o ->> 'discount_percent')::numeric)),
                jsonb_build_object('name', 'high_value', 'when', format('cart_total >= %s', (o ->> 'value_threshold')::numeric),
                                   'template', 'cart_reminder_quality', 'payload', '{"reviews": true}'::jsonb),
                jsonb_build_object('name', 'low_value', 'when', format('cart_total < %s', (o ->> 'value_threshold')::numeric),
                                   'template', 'cart_reminder_free_shipping', 'payload', '{"free_shipping": true}'::jsonb)));
        PERFORM automation.add_step(j, (o ->> 'second_wait')::interval, 'cart_expiring',
            includes => ARRAY['cart'], valid_for => interval '1 day',
            discount => jsonb_build_object('percent', (o ->> 'discount_percent')::numeric,
                                           'valid_for', o ->> 'discount_valid_for'));
    WHEN 'welcome' THEN
        o := automation._preset_options(name, options, jsonb_build_object(
            'journey', name, 'second_wait', '1 day', 'third_wait', '1 day', 'holdout_percent', 0));
        j := automation.create_journey(o ->> 'journey', 'signup', holdout_percent => (o ->> 'holdout_percent')::numeric,
                                       exit_on => ARRAY['ordered'],
                                       description => 'welcomes a new subscriber in three messages, until they order');
        PERFORM automation.add_step(j, interval '0', 'welcome');
        PERFORM automation.add_step(j, (o ->> 'second_wait')::interval, 'welcome_get_to_know_us',
                                    payload => '{"follow_us": true}'::jsonb);
        PERFORM automation.add_step(j, (o ->> 'third_wait')::interval, 'welcome_popular_products',
                                    includes => ARRAY['popular_products']);
    WHEN 'thank_you' THEN
        o := automation._preset_options(name, options, jsonb_build_object(
            'journey', name, 'wait', '4 hours', 'next_order_discount_percent', 10));
        j := automation.create_journey(o ->> 'journey', 'order_placed', purpose => 'transactional',
                                       description => 'thanks a customer for an order; first orders get the loyalty programme');
        PERFORM automation.add_step(j, (o ->> 'wait')::interval, 'thank_you', includes => ARRAY['order'],
            variants => jsonb_build_array(
                jsonb_build_object('name', 'first_order', 'when', 'first_order', 'template', 'thank_you_first_order',
                                   'payload', jsonb_build_object('join_loyalty_programme', true,
                                                                 'next_order_discount_percent', (o ->> 'next_order_discount_percent')::numeric)),
                jsonb_build_object('name', 'returning', 'when', 'NOT first_order', 'template', 'thank_you_returning',
                                   'payload', '{"loyalty_perk": true}'::jsonb)));
    WHEN 'feedback' THEN
        o := automation._preset_options(name, options, jsonb_build_object('journey', name, 'wait', '14 days'));
        j := automation.create_journey(o ->> 'journey', 'order_placed',
                                       description => 'asks for a review of an order');
        PERFORM automation.add_step(j, (o ->> 'wait')::interval, 'feedback_request', includes => ARRAY['order'],
                                    valid_for => interval '7 days');
    WHEN 'win_back' THEN
        o := automation._preset_options(name, options, jsonb_build_object(
            'journey', name, 'after_days', 15, 'second_after_days', 15, 'discount_percent', 10,
            'discount_valid_for', '7 days', 'segment', NULL, 'holdout_percent', 0));
        IF o ->> 'segment' IS NOT NULL THEN
            j := automation.create_journey(o ->> 'journey', 'segment_entered', jsonb_build_object('segment', o ->> 'segment'),
                                           reentry => 'each_time', exit_on => ARRAY['ordered', 'left_segment'],
                                           holdout_percent => (o ->> 'holdout_percent')::numeric,
                                           description => 'brings back customers who entered the segment ' || (o ->> 'segment'));
        ELSE
            IF jsonb_typeof(o -> 'after_days') <> 'number' OR (o ->> 'after_days')::numeric < 1 THEN
                RAISE EXCEPTION 'after_days must be a whole number of days, at least 1'
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            j := automation.create_journey(o ->> 'journey', 'inactivity',
                                           jsonb_build_object('days', (o ->> 'after_days')::int),
                                           reentry => 'each_time', exit_on => ARRAY['ordered'],
                                           holdout_percent => (o ->> 'holdout_percent')::numeric,
                                           description => format('brings back customers who have not ordered for %s days', o ->> 'after_days'));
        END IF;
        PERFORM automation.add_step(j, interval '0', 'win_back', includes => ARRAY['last_order', 'popular_products']);
        PERFORM automation.add_step(j, make_interval(days => (o ->> 'second_after_days')::int), 'win_back_offer',
                                    includes => ARRAY['last_order'],
                                    discount => jsonb_build_object('percent', (o ->> 'discount_percent')::numeric,
                                                                   'valid_for', o ->> 'discount_valid_for'));
    ELSE
        RAISE EXCEPTION 'unknown preset "%"', name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Presets are: ' || array_to_string(presets, ', ') || '.';
    END CASE;
    UPDATE automation.journey x SET preset = install_preset.name WHERE x.name = j;
    RETURN j;
END
$$;
COMMENT ON FUNCTION automation.install_preset(text, jsonb) IS 'install one of the classic flows (abandoned_cart, welcome, thank_you, feedback, win_back) as a journey; options change its numbers';
