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
    num numeric;
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
        -- (null for an option with a default would pass its checks and mean
        -- nothing: no expiry, a null discount)
        IF given -> k = 'null'::jsonb AND defaults -> k <> 'null'::jsonb THEN
            RAISE EXCEPTION 'option "%" of preset % must not be null', k, preset
                USING ERRCODE = 'null_value_not_allowed',
                      HINT = format('Leave it out for the default, %s.', defaults -> k);
        END IF;
        -- The numbers are counts, days, amounts and percentages: a negative
        -- one would pass into a condition such as order_count >= -1 and
        -- match every customer.
        IF jsonb_typeof(defaults -> k) = 'number' THEN
            BEGIN
                num := (given ->> k)::numeric;
            EXCEPTION WHEN invalid_text_representation THEN
                num := NULL;
            END;
            -- (a string that is no number is left to the preset's own check)
            IF jsonb_typeof(given -> k) NOT IN ('number', 'string') OR num < 0 OR num IN ('NaN', 'Infinity') THEN
                RAISE EXCEPTION 'option "%" of preset % must be a number of at least 0, not %', k, preset, given -> k
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = format('Leave it out for the default, %s.', defaults -> k);
            END IF;
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
    presets text[] := ARRAY['abandoned_cart', 'welcome', 'thank_you', 'feedback', 'win_back', 'replenishment',
                            'cross_sell', 'drip', 'anniversary', 'vip_quarterly', 'loyalty_points'];
    r jsonb;
    v jsonb;
    i integer;
    names text[] := '{}';
    lead_by jsonb;
    variants jsonb;
    spec jsonb;
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
            includes => ARRAY['cart', 'also_like'], valid_for => interval '1 day',
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
                                    includes => ARRAY['popular_products', 'also_like']);
    WHEN 'thank_you' THEN
        o := automation._preset_options(name, options, jsonb_build_object(
            'journey', name, 'wait', '4 hours', 'next_order_discount_percent', 10));
        IF (o ->> 'next_order_discount_percent')::numeric <= 0 OR (o ->> 'next_order_discount_percent')::numeric > 100 THEN
            RAISE EXCEPTION 'next_order_discount_percent must be between 0 and 100'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
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
        PERFORM automation.add_step(j, interval '0', 'win_back', includes => ARRAY['last_order', 'popular_products', 'also_like']);
        PERFORM automation.add_step(j, make_interval(days => (o ->> 'second_after_days')::int), 'win_back_offer',
                                    includes => ARRAY['last_order'],
                                    discount => jsonb_build_object('percent', (o ->> 'discount_percent')::numeric,
                                                                   'valid_for', o ->> 'discount_valid_for'));
    WHEN 'replenishment' THEN
        o := automation._preset_options(name, options, jsonb_build_object(
            'journey', name, 'lead_days', 7, 'lead_days_by', '{}'::jsonb, 'offers', '[]'::jsonb, 'holdout_percent', 0,
            'valid_for', '7 days'));
        -- An offer: {"category" or "product", "lead_days", "template", "payload"}: its own lead time and message.
        lead_by := coalesce(o -> 'lead_days_by', '{}');
        variants := '[]';
        IF jsonb_typeof(o -> 'offers') IS DISTINCT FROM 'array' THEN
            RAISE EXCEPTION 'offers must be a JSON array'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        i := 0;
        FOR v IN SELECT * FROM jsonb_array_elements(o -> 'offers') LOOP
            i := i + 1;
            IF jsonb_typeof(v) <> 'object' OR (v ? 'category') = (v ? 'product')
               OR EXISTS (SELECT FROM jsonb_object_keys(v) k WHERE k NOT IN ('category', 'product', 'lead_days', 'template', 'payload')) THEN
                RAISE EXCEPTION 'offer % must name one "category" or "product", with optional lead_days, template and payload', i
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'For example ''{"category": "vitamins", "lead_days": 20, "payload": {"free_sample": true}}''.';
            END IF;
            IF jsonb_typeof(coalesce(v -> 'category', v -> 'product')) <> 'string'
               OR (v ? 'template' AND jsonb_typeof(v -> 'template') <> 'string') THEN
                RAISE EXCEPTION 'offer %: category, product and template are names (strings)', i
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF v ? 'category' THEN
                PERFORM automation._check_catalog(NULL, ARRAY[v ->> 'category'], format('offer %s', i));
            ELSE
                PERFORM automation._check_catalog(ARRAY[v ->> 'product'], NULL, format('offer %s', i));
            END IF;
            IF v ? 'lead_days' THEN
                lead_by := lead_by || jsonb_build_object(coalesce(v ->> 'category', v ->> 'product'), v -> 'lead_days');
            END IF;
            variants := variants || jsonb_build_array(jsonb_build_object(
                'name', 'offer_' || i,
                'when', CASE WHEN v ? 'category' THEN format('%L = ANY (categories)', v ->> 'category')
                             ELSE format('%L = ANY (products)', v ->> 'product') END,
                'template', coalesce(v ->> 'template', 'replenishment_offer'),
                'payload', coalesce(v -> 'payload', '{}')));
        END LOOP;
        j := automation.create_journey(o ->> 'journey', 'replenishment',
                                       jsonb_build_object('lead_days', o -> 'lead_days', 'lead_days_by', lead_by),
                                       reentry => 'each_time', exit_on => ARRAY['bought'],
                                       holdout_percent => (o ->> 'holdout_percent')::numeric,
                                       description => 'reminds a customer to reorder a consumable before it runs out');
        PERFORM automation.add_step(j, interval '0', 'replenishment_reminder', variants => variants,
                                    valid_for => (o ->> 'valid_for')::interval);
    WHEN 'cross_sell' THEN
        o := automation._preset_options(name, options, jsonb_build_object(
            'journey', name, 'holdout_percent', 0,
            'rules', jsonb_build_array(
                jsonb_build_object('name', 'capsules', 'bought', jsonb_build_object('categories', jsonb_build_array('coffee machines')),
                                   'after', '14 days', 'template', 'cross_sell_capsules',
                                   'recommend', jsonb_build_object('categories', jsonb_build_array('coffee capsules')),
                                   'discount_percent', 10, 'payload', jsonb_build_object('first_order_discount', true)),
                jsonb_build_object('name', 'cleaning_guide', 'bought', jsonb_build_object('categories', jsonb_build_array('coffee machines')),
                                   'after', '14 days', 'template', 'cleaning_guide',
                                   'payload', jsonb_build_object('guide', 'coffee_machine_cleaning')),
                jsonb_build_object('name', 'phone_upgrade', 'bought', jsonb_build_object('categories', jsonb_build_array('phones')),
                                   'after', '2 years', 'template', 'upgrade_offer',
                                   'recommend', jsonb_build_object('categories', jsonb_build_array('phones')),
                                   'discount_percent', 15, 'discount_valid_for', '30 days'))));
        IF jsonb_typeof(o -> 'rules') IS DISTINCT FROM 'array' OR jsonb_array_length(o -> 'rules') = 0 THEN
            RAISE EXCEPTION 'rules must be a non-empty JSON array'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        i := 0;
        FOR r IN SELECT * FROM jsonb_array_elements(o -> 'rules') LOOP
            i := i + 1;
            IF jsonb_typeof(r) <> 'object' OR NOT r ? 'bought' OR NOT r ? 'template'
               OR EXISTS (SELECT FROM jsonb_object_keys(r) k
                           WHERE k NOT IN ('name', 'bought', 'after', 'template', 'recommend', 'discount_percent',
                                           'discount_valid_for', 'payload')) THEN
                RAISE EXCEPTION 'cross-sell rule % must have "bought" and "template", and optionally name, after, recommend, discount_percent, discount_valid_for and payload', i
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'For example ''{"name": "capsules", "bought": {"categories": ["coffee machines"]}, "after": "14 days", "template": "cross_sell_capsules", "recommend": {"categories": ["coffee capsules"]}}''.';
            END IF;
            BEGIN
                PERFORM (r ->> 'after')::interval;
            EXCEPTION WHEN OTHERS THEN
                RAISE EXCEPTION 'cross-sell rule %: "after" is not an interval: %', i, r ->> 'after'
                    USING ERRCODE = 'invalid_parameter_value';
            END;
            IF (r ->> 'after')::interval < interval '0' THEN
                RAISE EXCEPTION 'cross-sell rule %: "after" must not be negative', i
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            spec := jsonb_strip_nulls(jsonb_build_object('lookback', '2 days', 'recommend', r -> 'recommend',
                                                         'exit_if_bought', r -> 'recommend'))
                    || coalesce(r -> 'bought', '{}');
            j := automation.create_journey(format('%s_%s', o ->> 'journey', coalesce(r ->> 'name', i::text)),
                                           'product_purchased', spec, reentry => 'each_time',
                                           holdout_percent => (o ->> 'holdout_percent')::numeric,
                                           description => format('cross-sell %s after %s', coalesce(r ->> 'name', i::text),
                                                                 coalesce(r ->> 'after', '14 days')));
            PERFORM automation.add_step(j, coalesce((r ->> 'after')::interval, interval '14 days'), r ->> 'template',
                                        payload => coalesce(r -> 'payload', '{}'), valid_for => interval '7 days',
                                        includes => CASE WHEN r ? 'recommend' THEN ARRAY['recommended', 'also_like']
                                                         ELSE ARRAY['also_like'] END,
                                        discount => CASE WHEN r ? 'discount_percent' THEN
                                            jsonb_build_object('percent', r -> 'discount_percent',
                                                               'valid_for', coalesce(r ->> 'discount_valid_for', '14 days')) END);
            names := names || j;
        END LOOP;
    WHEN 'drip' THEN
        o := automation._preset_options(name, options, jsonb_build_object(
            'journey', name, 'categories', jsonb_build_array('pillows'),
            'recommend', jsonb_build_object('categories', jsonb_build_array('sheets')),
            'steps', jsonb_build_array(
                jsonb_build_object('wait', '2 days', 'template', 'drip_care_tips'),
                jsonb_build_object('wait', '5 days', 'template', 'drip_sleep_tips'),
                jsonb_build_object('wait', '7 days', 'template', 'drip_offer', 'recommend', true)),
            'holdout_percent', 0));
        IF jsonb_typeof(o -> 'steps') IS DISTINCT FROM 'array' OR jsonb_array_length(o -> 'steps') = 0 THEN
            RAISE EXCEPTION 'steps must be a non-empty JSON array'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'For example ''[{"wait": "2 days", "template": "care_tips"}, {"wait": "7 days", "template": "offer", "recommend": true}]''.';
        END IF;
        j := automation.create_journey(o ->> 'journey', 'product_purchased',
                                       jsonb_strip_nulls(jsonb_build_object('categories', o -> 'categories',
                                                                            'recommend', o -> 'recommend')),
                                       holdout_percent => (o ->> 'holdout_percent')::numeric,
                                       description => 'a series of messages after a purchase in ' ||
                                                      array_to_string(automation._text_array(o -> 'categories', 'categories'), ', '));
        i := 0;
        FOR v IN SELECT * FROM jsonb_array_elements(o -> 'steps') LOOP
            i := i + 1;
            IF jsonb_typeof(v) <> 'object' OR NOT v ? 'template'
               OR EXISTS (SELECT FROM jsonb_object_keys(v) k WHERE k NOT IN ('wait', 'template', 'payload', 'recommend')) THEN
                RAISE EXCEPTION 'drip step % must have a "template", and optionally wait, payload and recommend', i
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            PERFORM automation.add_step(j, coalesce((v ->> 'wait')::interval, interval '1 day'), v ->> 'template',
                                        payload => coalesce(v -> 'payload', '{}'),
                                        includes => CASE WHEN (v ->> 'recommend')::boolean THEN ARRAY['recommended']
                                                         ELSE '{}'::text[] END);
        END LOOP;
    WHEN 'anniversary' THEN
        o := automation._preset_options(name, options, jsonb_build_object(
            'journey', name, 'after', '11 months', 'gift_categories', '[]'::jsonb, 'birthday', true,
            'days_before', 7, 'holdout_percent', 0));
        IF (o ->> 'after')::interval <= interval '0' THEN
            RAISE EXCEPTION 'after must be positive'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        j := automation.create_journey(o ->> 'journey', 'gift_order',
                                       jsonb_build_object('gift_categories', o -> 'gift_categories'),
                                       reentry => 'each_time', holdout_percent => (o ->> 'holdout_percent')::numeric,
                                       description => 'asks, about a year after a gift, whether a birthday is coming up');
        PERFORM automation.add_step(j, (o ->> 'after')::interval, 'gift_anniversary', includes => ARRAY['category_products'],
                                    valid_for => interval '14 days');
        IF (o ->> 'birthday')::boolean
           AND EXISTS (SELECT FROM automation.source x WHERE x.kind = 'customers' AND x.columns ? 'birth_date') THEN
            names := ARRAY[j];
            j := automation.create_journey(o ->> 'journey' || '_birthday', 'birthday',
                                           jsonb_build_object('days_before', o -> 'days_before'),
                                           reentry => 'each_time', holdout_percent => (o ->> 'holdout_percent')::numeric,
                                           description => format('greets a customer %s days before their birthday', o ->> 'days_before'));
            PERFORM automation.add_step(j, interval '0', 'birthday', includes => ARRAY['also_like'], at_preferred_hour => true,
                                        valid_for => make_interval(days => greatest((o ->> 'days_before')::int, 1)));
        END IF;
    WHEN 'vip_quarterly' THEN
        o := automation._preset_options(name, options, jsonb_build_object(
            'journey', name, 'tiers', jsonb_build_array(jsonb_build_object('spend', 500, 'amount', 15),
                                                        jsonb_build_object('spend', 750, 'amount', 30)),
            'holdout_percent', 0));
        j := automation.create_journey(o ->> 'journey', 'quarter_start', jsonb_build_object('tiers', o -> 'tiers'),
                                       reentry => 'each_time', holdout_percent => (o ->> 'holdout_percent')::numeric,
                                       description => 'rewards last quarter''s best customers with a gift card at each quarter start');
        -- No valid_for: a reward for last quarter is still owed if the tick
        -- comes late (the server was down at the quarter's start).
        PERFORM automation.add_step(j, interval '0', 'vip_reward');
    WHEN 'loyalty_points' THEN
        o := automation._preset_options(name, options, jsonb_build_object(
            'journey', name, 'milestones', jsonb_build_array(500), 'holdout_percent', 0));
        j := automation.create_journey(o ->> 'journey', 'points_milestone', jsonb_build_object('milestones', o -> 'milestones'),
                                       reentry => 'each_time', holdout_percent => (o ->> 'holdout_percent')::numeric,
                                       description => 'tells a customer their loyalty points reached a milestone');
        PERFORM automation.add_step(j, interval '0', 'loyalty_milestone', payload => '{"redeem_on_next_order": true}'::jsonb,
                                    valid_for => interval '14 days');
    ELSE
        RAISE EXCEPTION 'unknown preset "%"', name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Presets are: ' || array_to_string(presets, ', ') || '.';
    END CASE;
    -- A preset of several journeys has collected them in names; the last is j.
    IF j IS DISTINCT FROM names[cardinality(names)] THEN
        names := names || j;
    END IF;
    UPDATE automation.journey x SET preset = install_preset.name WHERE x.name = ANY (names);
    RETURN array_to_string(names, ', ');
EXCEPTION
    -- an option's value that is not of its kind, met as the preset reads it
    WHEN invalid_text_representation OR invalid_datetime_format OR datetime_field_overflow
         OR interval_field_overflow OR numeric_value_out_of_range THEN
        RAISE EXCEPTION 'an option of preset % is not valid: %', name, SQLERRM
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Counts and percentages are JSON numbers, waits are strings such as "4 hours".';
END
$$;
COMMENT ON FUNCTION automation.install_preset(text, jsonb) IS 'install one of the flows (abandoned_cart, welcome, thank_you, feedback, win_back, replenishment, cross_sell, drip, anniversary, vip_quarterly, loyalty_points) as journeys; options change its numbers; returns the journey names';
