-- The outbox: one row per message, drained by any mailer.
--
-- Contract (see README, "Outbox (for mailers)"):
--   enqueue   writes a message once per dedupe key (also under concurrency)
--   claim     leases due messages with FOR UPDATE SKIP LOCKED, in due order,
--             after re-checking consent and suppression
--   ack/fail  the mailer reports each handout; failures retry with backoff
--             until automation.max_attempts, then the message is dead
--   track     delivery and engagement events; hard bounces, complaints and
--             unsubscribes suppress the address
--
-- The hot table automation.outbox only ever holds messages that may still be
-- handed out: status 'queued' (waiting for send_after) or 'leased' (handed
-- out until lease_until; claimable again once that has passed).  A message
-- that is finished -- sent, cancelled or dead -- moves to
-- automation.outbox_archive in the same statement that finishes it, so the
-- hot table stays as small as the backlog however many messages have passed
-- through, and automation.archive_outbox() prunes the archive after
-- automation.retention.
--
-- Everything here is set-based SQL; src/outbox.c has the shop read (run as
-- the binding role), the backoff and the settings.

CREATE SEQUENCE automation.outbox_id_seq AS bigint;

CREATE TABLE automation.outbox (
    id bigint NOT NULL DEFAULT nextval('automation.outbox_id_seq'),
    customer_key text NOT NULL,
    channel text NOT NULL,
    recipient text,
    template text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}',
    journey text,
    step integer,
    variant text,
    purpose text NOT NULL DEFAULT 'marketing',
    dedupe_key text NOT NULL,
    send_after timestamptz NOT NULL,
    status text NOT NULL DEFAULT 'queued',
    attempts integer NOT NULL DEFAULT 0,
    lease_until timestamptz,
    last_error text,
    errors jsonb NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now(),
    claimed_at timestamptz,
    CONSTRAINT outbox_pkey PRIMARY KEY (id),
    -- (every message written and every claim passes it: as the regular
    -- expression _is_word stands for, it took 1.3 us a row -- 70,000
    -- messages inserted into a copy of the outbox without indexes took
    -- 0.29 s with it, 0.20 s without)
    CONSTRAINT outbox_channel_check CHECK (automation._is_word(channel, 32)),
    CONSTRAINT outbox_template_check CHECK (template <> ''),
    CONSTRAINT outbox_payload_check CHECK (jsonb_typeof(payload) = 'object'),
    CONSTRAINT outbox_purpose_check CHECK (purpose IN ('marketing', 'transactional')),
    CONSTRAINT outbox_dedupe_key_check CHECK (dedupe_key <> ''),
    CONSTRAINT outbox_status_check CHECK (status IN ('queued', 'leased')),
    CONSTRAINT outbox_lease_check CHECK ((status = 'leased') = (lease_until IS NOT NULL)),
    CONSTRAINT outbox_attempts_check CHECK (attempts >= 0),
    CONSTRAINT outbox_errors_check CHECK (jsonb_typeof(errors) = 'array')
) WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000,
         autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 10000,
         autovacuum_vacuum_cost_delay = 0);
ALTER SEQUENCE automation.outbox_id_seq OWNED BY automation.outbox.id;
-- Every message passes through this table and leaves it: vacuum it after
-- every 10,000 dead rows whatever its size, without the cost delay, so that
-- it stays as small as its backlog (a queue's live rows are few, its dead
-- ones many).  The fillfactor leaves half of each page free: a claim leases
-- every message of the pages it takes, and with half free each can be
-- leased in place (a HOT update: no new index entries).  With a quarter
-- free, two claims in three were not HOT and added to every index.
COMMENT ON TABLE automation.outbox IS 'messages that may still be handed out to a mailer: queued, or leased until lease_until';
COMMENT ON COLUMN automation.outbox.recipient IS 'e-mail address (channel email) or phone number (channel sms) from the bound customers, refreshed at each claim; NULL for other channels';
COMMENT ON COLUMN automation.outbox.dedupe_key IS 'enqueueing the same key again returns the first message''s id (while it is in automation.outbox_key)';
COMMENT ON COLUMN automation.outbox.attempts IS 'how many times the message was handed out by claim';
COMMENT ON COLUMN automation.outbox.errors IS 'every failure the mailer reported: [{"at", "attempt", "error"}]';

-- Claim order is send_after order.  The index holds only columns a claim
-- does not change (the lease is checked on the row), so a claim's UPDATE is
-- a HOT update -- no new index entries -- when the page has room, which the
-- fillfactor leaves.  The price: a claim steps over the messages leased
-- ahead of it, a few batches' worth.  The dedupe keys live in
-- automation.outbox_key, not here.
CREATE INDEX outbox_due_idx ON automation.outbox (channel, send_after);

CREATE TABLE automation.outbox_archive (
    id bigint NOT NULL,
    customer_key text NOT NULL,
    channel text NOT NULL,
    recipient text,
    template text NOT NULL,
    payload jsonb NOT NULL,
    journey text,
    step integer,
    variant text,
    purpose text NOT NULL,
    dedupe_key text NOT NULL,
    send_after timestamptz NOT NULL,
    status text NOT NULL,
    attempts integer NOT NULL,
    last_error text,
    errors jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    claimed_at timestamptz,
    finished_at timestamptz NOT NULL,
    reason text,
    CONSTRAINT outbox_archive_pkey PRIMARY KEY (id),
    CONSTRAINT outbox_archive_status_check CHECK (status IN ('sent', 'cancelled', 'dead')),
    CONSTRAINT outbox_archive_reason_check CHECK ((status = 'cancelled') = (reason IS NOT NULL))
);
-- Pruning reads and deletes the oldest by finished_at, every tick.  A
-- B-tree: a BRIN index would cost less on the ack path, but its block
-- ranges keep the oldest time they ever held, and the pages pruning frees
-- are filled again by new messages, so after one retention period every
-- range would look old and every tick would read the whole archive.
CREATE INDEX outbox_archive_finished_at_idx ON automation.outbox_archive (finished_at);
COMMENT ON TABLE automation.outbox_archive IS 'finished messages (sent, cancelled with a reason, dead), kept for automation.retention';
COMMENT ON COLUMN automation.outbox_archive.reason IS 'why a cancelled message was not handed out: no_consent, suppressed, no_customer, no_address';

-- Every dedupe key taken, and the message that took it, whether that message
-- is still in the outbox or already in the archive; pruned with the archive.
-- Exactly-once enqueue is this table's primary key, written once when a
-- message is enqueued.  Neither the outbox nor the archive indexes the key:
-- a unique index on each would cost every ack an insert into a b-tree at a
-- random place (the archive's) and the outbox an index that bloats most
-- (random keys come and go), for a lookup that only enqueue makes.  The
-- collation is "C": keys are compared for equality only, and byte order is
-- the cheapest.
--
-- The same goes for the customer of each marketing message, which the
-- guardrails of a tick read (the frequency caps, saturation): every
-- marketing message queued or archived for a customer, found here by
-- outbox_key_marketing_idx and then by id.  Indexed on the archive or the
-- outbox, it would cost every ack an insert at a random place (measured:
-- claim + ack fell from 0.67-0.76 of the bare pattern to 0.62-0.67); here
-- enqueue pays it, once, and the mailer's path nothing.
CREATE TABLE automation.outbox_key (
    dedupe_key text COLLATE "C" NOT NULL,
    message_id bigint NOT NULL,
    customer_key text NOT NULL,
    marketing boolean NOT NULL,
    CONSTRAINT outbox_key_pkey PRIMARY KEY (dedupe_key)
);
CREATE INDEX outbox_key_marketing_idx ON automation.outbox_key (customer_key) INCLUDE (message_id) WHERE marketing;
COMMENT ON TABLE automation.outbox_key IS 'every dedupe key taken and its message (in automation.outbox or automation.outbox_archive); kept until the archive prunes the message';

-- What saturation (a guardrail of the journeys' marketing steps) must not
-- forget when the archive prunes a customer's sent marketing messages: how
-- many of them on each channel came after the customer's last open, click
-- or order known at pruning, and the first and last of them.  Without it a
-- customer who never engages would count as saturated only until the
-- archive forgets the messages (automation.retention) and then be sent
-- marketing again.  A later open, click or order ends the streak: the tick
-- reads the row only while the customer's last engagement is older than
-- first_at, and archive_outbox deletes the rows an open or click it prunes
-- came after.
CREATE TABLE automation.pruned_unengaged (
    customer_key text NOT NULL,
    channel text NOT NULL,
    sends integer NOT NULL,
    first_at timestamptz NOT NULL,
    last_at timestamptz NOT NULL,
    engaged_at timestamptz,
    CONSTRAINT pruned_unengaged_pkey PRIMARY KEY (customer_key, channel),
    CONSTRAINT pruned_unengaged_sends_check CHECK (sends > 0)
);
COMMENT ON TABLE automation.pruned_unengaged IS 'sent marketing messages the archive pruned that no open, click or order followed, per customer and channel: saturation keeps counting them';
COMMENT ON COLUMN automation.pruned_unengaged.engaged_at IS 'the customer''s last open, click or order when the row was last written';

CREATE TABLE automation.message_event (
    id bigint GENERATED BY DEFAULT AS IDENTITY,
    message_id bigint NOT NULL,
    customer_key text NOT NULL,
    event text NOT NULL,
    at timestamptz NOT NULL,
    data jsonb NOT NULL DEFAULT '{}',
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT message_event_pkey PRIMARY KEY (id),
    CONSTRAINT message_event_event_check CHECK (event IN ('delivered', 'open', 'click', 'bounce',
                                                          'complaint', 'unsubscribe', 'feedback')),
    CONSTRAINT message_event_data_check CHECK (jsonb_typeof(data) = 'object')
);
CREATE INDEX message_event_message_id_idx ON automation.message_event (message_id);
-- A customer's last open or click, for the saturation guardrail.
CREATE INDEX message_event_engaged_idx ON automation.message_event (customer_key, at) WHERE event IN ('open', 'click');
-- Pruning (automation.archive_outbox, at every tick) deletes by the event's
-- time: a B-tree, as on the archive and for the same reason.
CREATE INDEX message_event_at_idx ON automation.message_event (at);
COMMENT ON TABLE automation.message_event IS 'what happened to messages after they were sent, as reported by automation.track()';

-- _address(a): an address as the suppression list keeps it and looks it up:
-- lower case, without the white space around it -- ASCII's (tab, carriage
-- return, line feed ...) and, in a UTF8 database, Unicode's (no-break and
-- the other spaces, zero-width ones, the byte-order mark).  An address read
-- from a file with CRLF line ends, or pasted from a web page, is the same
-- address: suppressed in one form, it is suppressed in every form.  Written
-- without SET clauses, fully qualified, so that the planner inlines it into
-- the statements that compare many addresses (the tick's, claim's).
-- _recipient(a): the same address trimmed alike, its case kept (the part
-- before the @ may be case-sensitive): as the outbox hands it to the mailer,
-- which would otherwise get the shop's column as it is, CR LF and all.
-- Most addresses are already both, as automation._plain_address tells from
-- their bytes: they are taken as they are, without the trim by a set of
-- two dozen characters and the locale's lower-casing (100,000 addresses
-- trimmed: 40 -> 5 ms; trimmed and lower-cased: 82 -> 17 ms).
CREATE FUNCTION automation._plain_address(a text)
RETURNS boolean
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'automation_plain_address';
DO $do$
DECLARE
    spaces text := E' \t\n\r\v\f';
BEGIN
    IF pg_catalog.getdatabaseencoding() = 'UTF8' THEN
        spaces := spaces || (SELECT pg_catalog.string_agg(pg_catalog.chr(c), '')
                               FROM pg_catalog.unnest(ARRAY[133, 160, 5760, 8192, 8193, 8194, 8195, 8196, 8197, 8198,
                                                            8199, 8200, 8201, 8202, 8203, 8232, 8233, 8239, 8287,
                                                            12288, 65279]) c);
    END IF;
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION automation._address(a text)
        RETURNS text
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $$ SELECT CASE WHEN automation._plain_address(a) THEN a
                          ELSE pg_catalog.lower(pg_catalog.btrim(a, %L)) END $$$f$, spaces);
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION automation._recipient(a text)
        RETURNS text
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $$ SELECT CASE WHEN automation._plain_address(a) THEN a ELSE pg_catalog.btrim(a, %L) END $$$f$, spaces);
END
$do$;
COMMENT ON FUNCTION automation._address(text) IS 'an address lower-cased and trimmed of white space, ASCII''s and (UTF8) Unicode''s: as the suppression list keeps it';
COMMENT ON FUNCTION automation._recipient(text) IS 'an address trimmed of white space as _address trims it, its case kept: as the outbox hands it to the mailer';

CREATE TABLE automation.suppression (
    address text NOT NULL,
    reason text NOT NULL,
    since timestamptz NOT NULL,
    message_id bigint,
    CONSTRAINT suppression_pkey PRIMARY KEY (address),
    CONSTRAINT suppression_address_check CHECK (address = automation._address(address) AND address <> ''),
    CONSTRAINT suppression_reason_check CHECK (reason IN ('hard_bounce', 'complaint', 'unsubscribe', 'manual'))
);
COMMENT ON TABLE automation.suppression IS 'addresses that receive nothing, not even transactional messages: hard bounces, complaints, unsubscribes';
COMMENT ON COLUMN automation.suppression.address IS 'e-mail address or phone number, lower-cased and trimmed of white space (automation._address)';

-- When automation.notify_due() last looked for messages that had become due.
CREATE TABLE automation.outbox_notify (
    singleton boolean NOT NULL DEFAULT true,
    notified_until timestamptz NOT NULL,
    CONSTRAINT outbox_notify_pkey PRIMARY KEY (singleton),
    CONSTRAINT outbox_notify_singleton_check CHECK (singleton)
);
INSERT INTO automation.outbox_notify VALUES (true, '-infinity');

-- pg_dump keeps the queue, the archive, the events and above all the
-- suppression list: a restore that forgot who unsubscribed would be a
-- compliance incident, and one that forgot queued messages would lose mail.
-- The customer_key columns come back as text and are retyped by the next
-- bind, enqueue or tick.
SELECT pg_catalog.pg_extension_config_dump('automation.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('automation.outbox_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('automation.outbox_archive', '');
SELECT pg_catalog.pg_extension_config_dump('automation.outbox_key', '');
SELECT pg_catalog.pg_extension_config_dump('automation.pruned_unengaged', '');
SELECT pg_catalog.pg_extension_config_dump('automation.message_event', '');
SELECT pg_catalog.pg_extension_config_dump('automation.message_event_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('automation.suppression', '');

CREATE FUNCTION automation._customer_lookup(keys text[])
RETURNS TABLE (customer_key text, email text, phone text, consent boolean)
LANGUAGE c
AS 'MODULE_PATHNAME', 'automation_customer_lookup';
COMMENT ON FUNCTION automation._customer_lookup(text[]) IS 'the bound customers with these keys, read as the role that bound them';

CREATE FUNCTION automation._backoff(attempts integer)
RETURNS interval
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'automation_backoff';

CREATE FUNCTION automation._outbox_settings(OUT max_attempts integer, OUT retention interval)
RETURNS record
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'automation_outbox_settings';

-- _outbox_error(message): raises the error for a message id that is not in
-- the outbox in a state the caller accepts, saying what state it is in.
CREATE FUNCTION automation._outbox_error(fn text, message_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st text;
BEGIN
    SELECT o.status INTO st FROM automation.outbox o WHERE o.id = message_id;
    IF NOT FOUND THEN
        SELECT a.status INTO st FROM automation.outbox_archive a WHERE a.id = message_id;
    END IF;
    IF st IS NULL THEN
        RAISE EXCEPTION 'message % does not exist', message_id
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'It is neither in automation.outbox nor in automation.outbox_archive.',
                  HINT = format('Pass the id of a message that automation.claim() returned to %s().', fn);
    END IF;
    RAISE EXCEPTION 'message % is %, not leased', message_id, st
        USING ERRCODE = 'object_not_in_prerequisite_state',
              DETAIL = CASE st
                           WHEN 'queued' THEN 'It is waiting to be claimed.'
                           WHEN 'sent' THEN 'It was acknowledged as sent.'
                           WHEN 'cancelled' THEN 'It was cancelled at claim time.'
                           ELSE 'It failed too often and was given up.' END,
              HINT = format('%s() takes messages handed out by automation.claim().', fn);
END
$$;

-- _check_channel(channel): a channel is a lower-case word.
CREATE FUNCTION automation._check_channel(channel text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT automation._is_word(channel, 32) THEN
        RAISE EXCEPTION 'invalid channel name "%"', channel
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A channel is a lower-case word such as email, sms or push.';
    END IF;
END
$$;

-- _check_message(channel, payload): what every message must be, whether an
-- application enqueues it or a journey step will: a channel that is a
-- lower-case word, and a payload that is a JSON object.
CREATE FUNCTION automation._check_message(channel text, payload jsonb)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM automation._check_channel(channel);
    IF payload IS NULL OR jsonb_typeof(payload) <> 'object' THEN
        RAISE EXCEPTION 'payload must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass everything the template needs, e.g. ''{"first_name": "Ada"}''::jsonb.';
    END IF;
END
$$;

-- _check_phone(channel): refuses channel sms while the customers are bound
-- without a phone column: every such message would go nowhere.  (enqueue
-- and add_step ask; enqueue has made sure the customers are bound.)
CREATE FUNCTION automation._check_phone(channel text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF channel = 'sms' AND EXISTS (SELECT FROM automation.source s WHERE s.kind = 'customers' AND NOT s.columns ? 'phone') THEN
        RAISE EXCEPTION 'no phone column is bound'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Messages on channel sms go to the customer''s phone number.',
                  HINT = 'Bind the customers again with phone_column => ''...''.';
    END IF;
END
$$;

-- enqueue: writes a message for a customer, once per dedupe key.
CREATE FUNCTION automation.enqueue(customer_key anyelement, channel text, template text, payload jsonb,
                                   dedupe_key text, send_after timestamptz DEFAULT NULL,
                                   purpose text DEFAULT 'marketing', journey text DEFAULT NULL,
                                   step integer DEFAULT NULL, variant text DEFAULT NULL,
                                   now timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key_text text;
    c record;
    address text;
    new_id bigint;
BEGIN
    IF customer_key IS NULL OR channel IS NULL OR template IS NULL OR dedupe_key IS NULL
       OR purpose IS NULL OR now IS NULL THEN
        RAISE EXCEPTION 'customer_key, channel, template, dedupe_key and purpose must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM automation._check_key_type(pg_typeof(customer_key), automation.customer_key_type(), 'customer_key');
    key_text := customer_key::text;
    IF btrim(template) = '' OR btrim(dedupe_key) = '' THEN
        RAISE EXCEPTION 'template and dedupe_key must not be empty or blank'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The dedupe key names the message for exactly-once enqueue, e.g. ''welcome:'' || customer_key.';
    END IF;
    -- (the keys' index holds keys up to about 2,700 bytes)
    IF octet_length(dedupe_key) > 1000 THEN
        RAISE EXCEPTION 'dedupe_key must be at most 1000 bytes, not %', octet_length(dedupe_key)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Build the key from the ids that make the message unique, e.g. journey:subject:step; hash a long one.';
    END IF;
    send_after := coalesce(send_after, now);
    PERFORM automation._check_finite(now, 'now');
    PERFORM automation._check_finite(send_after, 'send_after');
    IF purpose NOT IN ('marketing', 'transactional') THEN
        RAISE EXCEPTION 'unknown purpose "%"', purpose
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Purpose is marketing (needs consent) or transactional (order confirmations and the like).';
    END IF;
    PERFORM automation._check_message(channel, payload);
    -- journey, step and variant attribute the message to a journey's step in
    -- journey_stats; the application's own messages leave them NULL
    IF journey IS NULL AND (step IS NOT NULL OR variant IS NOT NULL) THEN
        RAISE EXCEPTION 'step and variant need a journey'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Leave journey, step and variant NULL for a message of the application''s own.';
    END IF;
    IF journey IS NOT NULL AND NOT EXISTS (SELECT FROM automation.journey j WHERE j.name = enqueue.journey) THEN
        RAISE EXCEPTION 'journey "%" does not exist', journey
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Leave journey NULL for a message of the application''s own; journeys are made with automation.create_journey().';
    END IF;
    IF step IS NOT NULL AND NOT EXISTS (SELECT FROM automation.journey_step s
                                         WHERE s.journey = enqueue.journey AND s.step = enqueue.step) THEN
        RAISE EXCEPTION 'journey "%" has no step %', journey, step
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A variant is one of a step's: journey_stats counts it under that step.
    -- Where the step names its variants, it must be one of them (a typo
    -- would count apart); a step without variants takes the application's
    -- own labels.
    IF variant IS NOT NULL THEN
        IF step IS NULL THEN
            RAISE EXCEPTION 'a variant needs a step'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Pass the journey''s step the variant belongs to.';
        END IF;
        IF btrim(variant) = '' THEN
            RAISE EXCEPTION 'variant must not be blank'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Leave it NULL for the step''s own message.';
        END IF;
        IF EXISTS (SELECT FROM automation.journey_step s
                    WHERE s.journey = enqueue.journey AND s.step = enqueue.step AND jsonb_array_length(s.variants) > 0
                      AND NOT EXISTS (SELECT FROM jsonb_array_elements(s.variants) v WHERE v ->> 'name' = enqueue.variant)) THEN
            RAISE EXCEPTION 'step % of journey "%" has no variant "%"', step, journey, variant
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Its variants are: ' || (SELECT string_agg(v ->> 'name', ', ' ORDER BY ord)
                                                      FROM automation.journey_step s,
                                                           jsonb_array_elements(s.variants) WITH ORDINALITY x(v, ord)
                                                     WHERE s.journey = enqueue.journey AND s.step = enqueue.step) || '.';
        END IF;
    END IF;

    -- After a restore the key column is text again; _retype_keys() fixes
    -- that, but costs more than the rest of an enqueue, so ask first.
    IF automation._keys_mistyped() THEN
        PERFORM automation._retype_keys();
    END IF;

    -- Seen before: the first message's id, wherever it now is.
    SELECT k.message_id INTO new_id FROM automation.outbox_key k WHERE k.dedupe_key = enqueue.dedupe_key;
    IF FOUND THEN
        RETURN new_id;
    END IF;

    IF NOT EXISTS (SELECT FROM automation.source s WHERE s.kind = 'customers') THEN
        RAISE EXCEPTION 'no customers are bound'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'The recipient of a message is looked up in the shop''s customers.',
                  HINT = 'Bind them first with automation.bind_customers().';
    END IF;
    PERFORM automation._check_phone(channel);
    BEGIN
        SELECT * INTO c FROM automation._customer_lookup(ARRAY[key_text]);
    EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
        -- (a key given as text that is no key of the shop's type)
        RAISE EXCEPTION 'customer key "%" is not a valid %', key_text, automation.customer_key_type()
            USING ERRCODE = 'invalid_text_representation',
                  DETAIL = 'The shop''s customers are keyed by that type; a key given as text must read as one.';
    END;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'customer % does not exist', key_text
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = (SELECT format('No row of %s has this key.', b.relation) FROM automation.bindings b WHERE b.kind = 'customers');
    END IF;
    address := automation._recipient(CASE channel WHEN 'email' THEN c.email WHEN 'sms' THEN c.phone END);
    IF channel IN ('email', 'sms') AND coalesce(automation._address(address), '') = '' THEN
        RAISE EXCEPTION 'customer % has no %', key_text,
                        CASE channel WHEN 'email' THEN 'e-mail address' ELSE 'phone number' END
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Choose another channel for this customer.';
    END IF;

    -- Take the key; a session that takes it at the same time waits here
    -- for this one, and finds it taken if this one commits.
    INSERT INTO automation.outbox_key AS k (dedupe_key, message_id, customer_key, marketing)
    VALUES (dedupe_key, nextval('automation.outbox_id_seq'),
            (jsonb_populate_record(NULL::automation.outbox_key, jsonb_build_object('customer_key', c.customer_key))).customer_key,
            purpose = 'marketing')
    ON CONFLICT ON CONSTRAINT outbox_key_pkey DO NOTHING
    RETURNING k.message_id INTO new_id;
    IF new_id IS NULL THEN
        -- Another session enqueued the same key first and has committed.
        SELECT k.message_id INTO new_id FROM automation.outbox_key k WHERE k.dedupe_key = enqueue.dedupe_key;
        RETURN new_id;
    END IF;

    INSERT INTO automation.outbox AS o (id, customer_key, channel, recipient, template, payload, journey, step,
                                        variant, purpose, dedupe_key, send_after, created_at)
    VALUES (new_id, (jsonb_populate_record(NULL::automation.outbox, jsonb_build_object('customer_key', c.customer_key))).customer_key,
            channel, address, template, payload, journey, step, variant, purpose, dedupe_key, send_after, now);

    IF send_after <= now THEN
        PERFORM pg_notify('automation_outbox', channel);
    END IF;
    -- Queued for later: the worker wakes the mailers when it is due.
    IF send_after > pg_catalog.now() THEN
        PERFORM automation._poke_worker(send_after);
    END IF;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION automation.enqueue(anyelement, text, text, jsonb, text, timestamptz, text, text, integer, text, timestamptz)
    IS 'write a message to the outbox once per dedupe key; returns its id, or the id of the message enqueued earlier with that key';

-- _check_mailer_now(now): claim, ack and fail run as the extension's owner
-- and take a now so that tests and the owner can replay a moment.  A mailer
-- that chose its own could claim scheduled messages early, or acknowledge
-- one in the past so that the archive prunes it at once and frees its
-- dedupe key for the same message to be enqueued again.  Only members of
-- the owner's role (superusers among them) pass a now other than the
-- transaction's.
CREATE FUNCTION automation._check_mailer_now(now timestamptz)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF now IS DISTINCT FROM pg_catalog.now()
       AND NOT pg_has_role(session_user, (SELECT e.extowner FROM pg_extension e WHERE e.extname = 'automation'), 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied to pass now'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'A mailer acts at the server''s time; only the extension''s owner replays another moment.',
                  HINT = 'Leave now out.';
    END IF;
    -- (a lease or a finish at infinity would never run out, nor be pruned)
    PERFORM automation._check_finite(now, 'now');
END
$$;

-- claim: leases up to batch due messages of one channel.
--
-- Its statements are planned once per session (plan_cache_mode): the plan
-- that fits one batch fits every batch -- the claim index in due order, the
-- primary key for the rest -- and planning the claim anew each time cost as
-- much as running it.
CREATE FUNCTION automation.claim(batch integer, lease interval, channel text, now timestamptz DEFAULT now())
RETURNS SETOF automation.outbox
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    have_customers boolean;
    have_phone boolean;
    -- a message whose lease ran out after its last allowed handout is dead
    -- (a mailer that dies on it each time would be handed it for ever)
    max_attempts integer := (automation._outbox_settings()).max_attempts;
    handed bigint;
    lease_from timestamptz;
BEGIN
    IF batch IS NULL OR lease IS NULL OR channel IS NULL OR now IS NULL THEN
        RAISE EXCEPTION 'batch, lease, channel and now must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'For example automation.claim(batch => 100, lease => ''5 minutes'', channel => ''email'').';
    END IF;
    PERFORM automation._check_mailer_now(now);
    IF batch < 1 OR batch > 10000 THEN
        RAISE EXCEPTION 'batch must be between 1 and 10000, not %', batch
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- (enqueue takes no other name: a mistyped one would wait for ever)
    PERFORM automation._check_channel(channel);
    SELECT s.columns ? 'phone' INTO have_phone FROM automation.source s WHERE s.kind = 'customers';
    have_customers := FOUND;
    have_phone := coalesce(have_phone, false);
    IF lease < interval '1 second' OR lease > interval '1 day' THEN
        RAISE EXCEPTION 'lease must be between 1 second and 1 day, not %', lease
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A message whose lease runs out is handed out again; a lease should cover the time to send one batch.';
    END IF;

    LOOP
        -- A lease runs from the handout: at the server's time, from this
        -- moment, not from the start of the mailer's transaction (which may
        -- have begun longer ago than the lease lasts: the messages would be
        -- handed out with their lease run out, to be handed out again).
        lease_from := CASE WHEN claim.now = pg_catalog.now() THEN pg_catalog.clock_timestamp() ELSE claim.now END;
        -- One statement: lock the due messages no one else holds, in due
        -- order (marketing messages wait while no customers are bound:
        -- consent cannot be checked); re-check them against the live
        -- customers and the suppression list; cancel what may not be sent
        -- and hand out the rest.  The cancellations take the locked rows'
        -- ctids (which the lock holds still until the end of the
        -- transaction) as an array: joined by id, the generic plan hashed
        -- the whole outbox for them.  The lease joins by id: leasing by
        -- ctid and matching keys as bytes measured slower with one mailer
        -- (31,700-33,700 against 33,900-38,400 messages/s).
        RETURN QUERY
        WITH due AS MATERIALIZED (
            SELECT o.ctid AS tid, o.id, o.customer_key::text AS key, o.channel, o.purpose, o.recipient,
                   o.status = 'leased' AND o.attempts >= max_attempts AS spent
              FROM automation.outbox o
             WHERE o.channel = claim.channel
               AND o.send_after <= claim.now
               AND (o.status = 'queued' OR o.lease_until <= claim.now)
               AND (have_customers OR o.purpose = 'transactional')
             ORDER BY o.send_after
             LIMIT batch
               FOR UPDATE SKIP LOCKED
        ), live AS (
            SELECT * FROM automation._customer_lookup(CASE WHEN have_customers THEN ARRAY(SELECT d.key FROM due d) END)
        ), verdict AS (
            SELECT d.tid, d.id, d.channel, d.spent,
                   -- the live address; the one written with the message only
                   -- where the shop keeps none (no such customer, no phone
                   -- column, another channel): an address the customer
                   -- removed is gone
                   CASE WHEN l.customer_key IS NULL THEN d.recipient
                        WHEN d.channel = 'email' THEN automation._recipient(l.email)
                        WHEN d.channel = 'sms' AND have_phone THEN automation._recipient(l.phone)
                        ELSE d.recipient END AS address,
                   CASE WHEN d.purpose = 'marketing' AND l.customer_key IS NULL THEN 'no_customer'
                        WHEN d.purpose = 'marketing' AND NOT l.consent THEN 'no_consent'
                   END AS reason
              FROM due d
              LEFT JOIN live l ON l.customer_key = d.key
        ), checked AS (
            -- (one row per message: where the shop keeps a customer on
            -- several rows, the strictest decides -- a refusal on any)
            SELECT DISTINCT ON (v.id) v.tid, v.id, v.address, v.spent, v.reason
              FROM (SELECT v.tid, v.id, v.address, v.spent,
                           coalesce(CASE WHEN v.spent THEN 'spent' END, v.reason,
                                    CASE WHEN v.channel IN ('email', 'sms') AND coalesce(automation._address(v.address), '') = ''
                                         THEN 'no_address'
                                         WHEN EXISTS (SELECT FROM automation.suppression s
                                                       WHERE s.address = automation._address(v.address)) THEN 'suppressed'
                                    END) AS reason
                      FROM verdict v) v
             ORDER BY v.id, v.reason IS NULL, v.reason
        ), cancelled AS (
            DELETE FROM automation.outbox o
             WHERE o.ctid = ANY (ARRAY(SELECT c.tid FROM checked c WHERE c.reason IS NOT NULL))
            RETURNING o.*
        ), archived AS (
            INSERT INTO automation.outbox_archive (id, customer_key, channel, recipient, template, payload, journey,
                                                   step, variant, purpose, dedupe_key, send_after, status, attempts,
                                                   last_error, errors, created_at, claimed_at, finished_at, reason)
            -- (a cancelled message keeps the address it was checked
            -- against, a dead one the address it was last handed out to)
            SELECT x.id, x.customer_key, x.channel, CASE WHEN c.spent THEN x.recipient ELSE c.address END,
                   x.template, x.payload, x.journey, x.step,
                   x.variant, x.purpose, x.dedupe_key, x.send_after,
                   CASE WHEN c.spent THEN 'dead' ELSE 'cancelled' END, x.attempts,
                   CASE WHEN c.spent THEN 'the lease ran out' ELSE x.last_error END,
                   CASE WHEN c.spent
                        THEN x.errors || jsonb_build_array(jsonb_build_object('at', claim.now, 'attempt', x.attempts,
                                                                              'error', 'the lease ran out'))
                        ELSE x.errors END,
                   x.created_at, x.claimed_at, claim.now, CASE WHEN NOT c.spent THEN c.reason END
              FROM cancelled x
              JOIN checked c ON c.id = x.id
        )
        UPDATE automation.outbox o
           SET status = 'leased', lease_until = lease_from + lease, attempts = o.attempts + 1,
               recipient = c.address, claimed_at = claim.now
          FROM checked c
         WHERE o.id = c.id AND c.reason IS NULL
        RETURNING o.*;

        GET DIAGNOSTICS handed = ROW_COUNT;
        IF handed > 0 THEN
            -- The worker wakes the mailers again if these leases run out.
            IF lease_from + lease > pg_catalog.now() THEN
                PERFORM automation._poke_worker(lease_from + lease);
            END IF;
            RETURN;
        END IF;
        -- Nothing was handed out: nothing was due, or everything locked was
        -- cancelled.  Look again in the second case, more may be due.
        PERFORM FROM automation.outbox o
         WHERE o.channel = claim.channel
           AND o.send_after <= claim.now
           AND (o.status = 'queued' OR o.lease_until <= claim.now)
           AND (have_customers OR o.purpose = 'transactional')
         LIMIT 1
           FOR UPDATE SKIP LOCKED;
        EXIT WHEN NOT FOUND;
    END LOOP;
END
$$;
COMMENT ON FUNCTION automation.claim(integer, interval, text, timestamptz)
    IS 'lease up to batch due messages of a channel for lease; consent and suppression are re-checked, and messages that fail them are cancelled';

-- _finish: moves handed-out messages from the outbox to the archive, as sent
-- or dead.  Returns how many moved.  PL/pgSQL, so that its statement keeps
-- its plan for the session (a SQL function's is made at every call).  fail
-- runs it; ack has the same statement written out.
CREATE FUNCTION automation._finish(ids bigint[], status text, now timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    done bigint;
BEGIN
    WITH moved AS (
        DELETE FROM automation.outbox o
         WHERE o.id = ANY (ids) AND o.attempts > 0
        RETURNING o.*
    ), archived AS (
        INSERT INTO automation.outbox_archive (id, customer_key, channel, recipient, template, payload, journey,
                                               step, variant, purpose, dedupe_key, send_after, status, attempts,
                                               last_error, errors, created_at, claimed_at, finished_at)
        SELECT m.id, m.customer_key, m.channel, m.recipient, m.template, m.payload, m.journey, m.step,
               m.variant, m.purpose, m.dedupe_key, m.send_after, _finish.status, m.attempts, m.last_error,
               m.errors, m.created_at, m.claimed_at, _finish.now
          FROM moved m
        RETURNING 1
    )
    SELECT count(*) INTO done FROM archived;
    RETURN done;
END
$$;

-- ack: the mailer sent these messages.  Any message that was handed out and
-- is not finished yet is marked sent, whoever holds its lease now: a mailer
-- whose lease ran out may have sent the message just before another claimed
-- it, and the acknowledgement is the truth about the message, not about the
-- lease.  Messages already finished (sent, cancelled, dead) are left as they
-- are, so acknowledging twice is a no-op.  An id that never existed or was
-- never handed out is an error, and nothing of the call is applied.
CREATE FUNCTION automation.ack(ids bigint[], now timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    done bigint;
    bad bigint;
BEGIN
    -- (array_position cannot search a multidimensional array)
    IF array_ndims(ids) > 1 THEN
        RAISE EXCEPTION 'ids must be a one-dimensional array'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF ids IS NULL OR array_position(ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'ids must not be null or contain null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF now IS NULL THEN
        RAISE EXCEPTION 'now must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM automation._check_mailer_now(now);
    -- _finish's statement, written out: a mailer acknowledges every batch,
    -- and a second PL/pgSQL call (and search_path switch) per batch showed.
    WITH moved AS (
        DELETE FROM automation.outbox o
         WHERE o.id = ANY (ids) AND o.attempts > 0
        RETURNING o.*
    ), archived AS (
        INSERT INTO automation.outbox_archive (id, customer_key, channel, recipient, template, payload, journey,
                                               step, variant, purpose, dedupe_key, send_after, status, attempts,
                                               last_error, errors, created_at, claimed_at, finished_at)
        SELECT m.id, m.customer_key, m.channel, m.recipient, m.template, m.payload, m.journey, m.step,
               m.variant, m.purpose, m.dedupe_key, m.send_after, 'sent', m.attempts, m.last_error,
               m.errors, m.created_at, m.claimed_at, ack.now
          FROM moved m
        RETURNING 1
    )
    SELECT count(*) INTO done FROM archived;
    IF done < cardinality(ids) AND done < (SELECT count(DISTINCT i) FROM unnest(ids) i) THEN
        SELECT i INTO bad
          FROM unnest(ids) i
         WHERE NOT EXISTS (SELECT FROM automation.outbox_archive a WHERE a.id = i)
         ORDER BY i LIMIT 1;
        IF FOUND THEN
            IF EXISTS (SELECT FROM automation.outbox o WHERE o.id = bad) THEN
                RAISE EXCEPTION 'message % was never claimed', bad
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          DETAIL = 'It is waiting to be handed out by automation.claim().',
                          HINT = 'Acknowledge only messages that automation.claim() returned.';
            END IF;
            RAISE EXCEPTION 'message % does not exist', bad
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'It is neither in automation.outbox nor in automation.outbox_archive.',
                      HINT = 'Acknowledge only messages that automation.claim() returned.';
        END IF;
    END IF;
    RETURN done;
END
$$;
COMMENT ON FUNCTION automation.ack(bigint[], timestamptz)
    IS 'the mailer sent these claimed messages; returns how many were newly marked sent (acknowledging again is a no-op)';

-- fail: the mailer could not send a message; retry it later or give it up.
-- attempt, when given, is the attempts claim returned with the message: a
-- mailer whose lease ran out and whose message was handed out again then
-- cannot undo the other mailer's lease.
CREATE FUNCTION automation.fail(id bigint, error text, retry_in interval DEFAULT NULL, now timestamptz DEFAULT now(),
                                attempt integer DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    settings record := automation._outbox_settings();
    m record;
    retry_at timestamptz;
BEGIN
    IF id IS NULL OR error IS NULL OR now IS NULL THEN
        RAISE EXCEPTION 'id, error and now must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM automation._check_mailer_now(now);
    IF retry_in < interval '0' OR retry_in > interval '30 days' THEN
        RAISE EXCEPTION 'retry_in must be between 0 and 30 days, not %', retry_in
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL to retry after the automatic backoff.';
    END IF;

    SELECT o.attempts INTO m FROM automation.outbox o WHERE o.id = fail.id AND o.status = 'leased' FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM automation._outbox_error('automation.fail', fail.id);
    END IF;
    IF attempt IS NOT NULL AND (attempt < 1 OR attempt > m.attempts) THEN
        RAISE EXCEPTION 'invalid attempt %: message % has been handed out % times', attempt, fail.id, m.attempts
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the attempts column of the row automation.claim() returned.';
    END IF;
    IF attempt IS NOT NULL AND attempt <> m.attempts THEN
        RAISE EXCEPTION 'message % was handed out again since attempt %', fail.id, attempt
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('Its lease ran out and automation.claim() handed it out again (attempt %s); that mailer reports it now.', m.attempts);
    END IF;

    UPDATE automation.outbox o
       SET last_error = fail.error,
           errors = o.errors || jsonb_build_array(jsonb_build_object('at', fail.now, 'attempt', o.attempts, 'error', fail.error))
     WHERE o.id = fail.id;

    IF m.attempts >= settings.max_attempts THEN
        PERFORM automation._finish(ARRAY[fail.id], 'dead', now);
        RETURN 'dead';
    END IF;
    UPDATE automation.outbox o
       SET status = 'queued', lease_until = NULL,
           send_after = fail.now + coalesce(retry_in, automation._backoff(o.attempts))
     WHERE o.id = fail.id
    RETURNING o.send_after INTO retry_at;
    -- The worker wakes the mailers when the retry is due.
    IF retry_at > pg_catalog.now() THEN
        PERFORM automation._poke_worker(retry_at);
    END IF;
    RETURN 'queued';
END
$$;
COMMENT ON FUNCTION automation.fail(bigint, text, interval, timestamptz, integer)
    IS 'the mailer could not send a claimed message: retry it after retry_in (NULL: exponential backoff with jitter), or after automation.max_attempts handouts give it up as dead; returns queued or dead';

-- track: what happened to a message after it was sent.
CREATE FUNCTION automation.track(message_id bigint, event text, at timestamptz DEFAULT now(), data jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    events text[] := ARRAY['delivered', 'open', 'click', 'bounce', 'complaint', 'unsubscribe', 'feedback'];
    m record;
    suppress text;
    event_id bigint;
BEGIN
    IF message_id IS NULL OR event IS NULL OR at IS NULL THEN
        RAISE EXCEPTION 'message_id, event and at must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM automation._check_finite(at, 'at');
    -- (a mail provider's clock may run a little ahead of the server's; an
    -- open dated years ahead -- milliseconds read as seconds -- would count
    -- as the customer's latest engagement for ever)
    IF at > pg_catalog.now() + interval '1 hour' THEN
        RAISE EXCEPTION 'at must not lie in the future, not %', at
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'An event is reported after it happened; a clock up to an hour ahead of the server''s is taken.';
    END IF;
    IF NOT event = ANY (events) THEN
        RAISE EXCEPTION 'unknown event "%"', event
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Events are: ' || array_to_string(events, ', ') || '.';
    END IF;
    data := coalesce(data, '{}');
    IF jsonb_typeof(data) <> 'object' THEN
        RAISE EXCEPTION 'data must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example ''{"type": "hard"}'' for a bounce or ''{"rating": 5, "text": "..."}'' for feedback.';
    END IF;
    IF event = 'bounce' AND (data ->> 'type') IS DISTINCT FROM 'hard' AND (data ->> 'type') IS DISTINCT FROM 'soft' THEN
        RAISE EXCEPTION 'a bounce needs data {"type": "hard"} or {"type": "soft"}'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A hard bounce suppresses the address; a soft one is only recorded.';
    END IF;

    SELECT o.recipient, o.attempts, o.status, o.created_at INTO m FROM automation.outbox o WHERE o.id = message_id;
    IF NOT FOUND THEN
        SELECT a.recipient, a.attempts, a.status, a.created_at INTO m FROM automation.outbox_archive a WHERE a.id = message_id;
    END IF;
    IF NOT FOUND THEN
        -- (an unsubscribe from a mail older than the archive keeps still
        -- asks for what it asks for)
        IF event IN ('unsubscribe', 'complaint') OR (event = 'bounce' AND data ->> 'type' = 'hard') THEN
            RAISE EXCEPTION 'message % does not exist', message_id
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'It is neither in automation.outbox nor in automation.outbox_archive (pruned after automation.retention).',
                      HINT = format('To suppress its address all the same, call automation.suppress(address, %L).',
                                    CASE WHEN event = 'bounce' THEN 'hard_bounce' ELSE event END);
        END IF;
        RAISE EXCEPTION 'message % does not exist', message_id
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'It is neither in automation.outbox nor in automation.outbox_archive (pruned after automation.retention).';
    END IF;
    -- (an open dated before the message was written -- a date read in the
    -- wrong format, say -- would be pruned at the next tick and count for
    -- nothing; a clock up to an hour behind the server's is taken)
    IF at < m.created_at - interval '1 hour' THEN
        RAISE EXCEPTION 'at must not lie before the message was written, not %', at
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Message %s was written at %s.', message_id, m.created_at);
    END IF;
    -- (a bounce of a message never sent would suppress an address for nothing)
    IF m.attempts = 0 THEN
        RAISE EXCEPTION 'message % was never handed out', message_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('It is %s and automation.claim() has not returned it.', m.status),
                  HINT = 'Track events of messages a mailer sent.';
    END IF;

    INSERT INTO automation.message_event AS e (message_id, customer_key, event, at, data)
    SELECT track.message_id, o.customer_key, event, at, data
      FROM (SELECT x.customer_key FROM automation.outbox x WHERE x.id = track.message_id
            UNION ALL
            SELECT a.customer_key FROM automation.outbox_archive a WHERE a.id = track.message_id
            LIMIT 1) o
    RETURNING e.id INTO event_id;

    suppress := CASE WHEN event = 'bounce' AND data ->> 'type' = 'hard' THEN 'hard_bounce'
                     WHEN event IN ('complaint', 'unsubscribe') THEN event END;
    IF suppress IS NOT NULL AND coalesce(automation._address(m.recipient), '') <> '' THEN
        INSERT INTO automation.suppression (address, reason, since, message_id)
        VALUES (automation._address(m.recipient), suppress, least(at, pg_catalog.now()), message_id)
        ON CONFLICT ON CONSTRAINT suppression_pkey DO NOTHING;
    END IF;
    RETURN event_id;
END
$$;
COMMENT ON FUNCTION automation.track(bigint, text, timestamptz, jsonb)
    IS 'record an event of a message (delivered, open, click, bounce, complaint, unsubscribe, feedback); hard bounces, complaints and unsubscribes suppress the address';

-- suppress(address, reason, since): puts an address on the suppression list
-- by hand -- an unsubscribe that came by letter, a complaint from a
-- feedback loop, a list imported from another mailer.  Returns whether it
-- was added; an address already there keeps its first reason.
CREATE FUNCTION automation.suppress(address text, reason text DEFAULT 'manual', since timestamptz DEFAULT now())
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    normal text := automation._address(address);
BEGIN
    IF address IS NULL OR reason IS NULL OR since IS NULL THEN
        RAISE EXCEPTION 'address, reason and since must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF normal = '' THEN
        RAISE EXCEPTION 'address must not be empty or blank'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- (an address is far shorter; the list's index takes at most about
    -- 2,700 bytes, and would refuse a longer one with advice about hashes)
    IF octet_length(normal) > 1000 THEN
        RAISE EXCEPTION 'address must be at most 1000 bytes, not %', octet_length(normal)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF reason NOT IN ('hard_bounce', 'complaint', 'unsubscribe', 'manual') THEN
        RAISE EXCEPTION 'unknown reason "%"', reason
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Reason is one of: hard_bounce, complaint, unsubscribe, manual.';
    END IF;
    PERFORM automation._check_finite(since, 'since');
    IF since > pg_catalog.now() THEN
        RAISE EXCEPTION 'since must not lie in the future, not %', since
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The address is suppressed from now on; since records when it asked to be.';
    END IF;
    INSERT INTO automation.suppression AS x (address, reason, since)
    VALUES (normal, reason, since)
    ON CONFLICT ON CONSTRAINT suppression_pkey DO NOTHING;
    IF NOT FOUND THEN
        RAISE NOTICE 'address "%" is already suppressed', normal;
        RETURN false;
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION automation.suppress(text, text, timestamptz)
    IS 'put an address on the suppression list (lower-cased and trimmed); returns false when it was there already';

-- unsuppress(address): takes an address off the suppression list, for the
-- extension's administrator only (a customer who asked to hear from the
-- shop again).  Returns whether it was there.
CREATE FUNCTION automation.unsuppress(address text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF address IS NULL THEN
        RAISE EXCEPTION 'address must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    DELETE FROM automation.suppression x WHERE x.address = automation._address(unsuppress.address);
    IF NOT FOUND THEN
        RAISE NOTICE 'address "%" is not suppressed', automation._address(address);
        RETURN false;
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION automation.unsuppress(text) IS 'take an address off the suppression list; returns false when it was not on it';

-- notify_due: NOTIFY automation_outbox for every channel that has messages
-- which became due since the last call: their send_after came, or their
-- lease ran out -- unless the channel has queued messages that were due
-- already at the last call, which its mailers were told of and have not
-- taken: they are busy with that backlog (and take the expired leases with
-- it, in send_after order) or gone.  Such a channel is woken again once a
-- minute (the first call in a new minute) while messages due wait in it:
-- a mailer may have gone to sleep on an empty claim while another's claim,
-- rolled back since, held the rows, or before a message dated earlier than
-- the last call was committed.  Messages due when enqueued were notified by
-- enqueue.  A stage of the tick; returns how many channels it notified.
--
-- Every question is a range of outbox_due_idx (channel, send_after): the
-- channels one probe each, the messages come due since the last call, the
-- oldest queued one, and the leases only of a channel without a backlog,
-- whose messages due are then those leased and those just come due.  So
-- a tick pays for what changed, not for the whole backlog a mailer that
-- fell behind left in the table (it read all of it before).  Each is a
-- walk of the index that stops at the first row, never a bitmap: of an
-- outbox whose statistics are missing or old the planner may expect a few
-- rows, and a bitmap gathers every one of the backlog before the first is
-- looked at (35,000 messages: 2 ms per tick).
CREATE FUNCTION automation.notify_due(now timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET enable_bitmapscan = off
AS $$
DECLARE
    since timestamptz;
    again boolean;
    ch text;
    notified bigint := 0;
BEGIN
    IF now IS NULL THEN
        RAISE EXCEPTION 'now must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM automation._check_finite(now, 'now');
    SELECT n.notified_until INTO since FROM automation.outbox_notify n FOR UPDATE;
    IF now <= since THEN
        RETURN 0;
    END IF;
    again := date_trunc('minute', now) > date_trunc('minute', since);
    FOR ch IN
        WITH RECURSIVE c AS (
            (SELECT o.channel FROM automation.outbox o ORDER BY o.channel LIMIT 1)
            UNION ALL
            SELECT (SELECT o.channel FROM automation.outbox o WHERE o.channel > c.channel ORDER BY o.channel LIMIT 1)
              FROM c WHERE c.channel IS NOT NULL)
        SELECT c.channel FROM c WHERE c.channel IS NOT NULL
    LOOP
        IF EXISTS (SELECT FROM automation.outbox o
                    WHERE o.channel = ch AND o.send_after > since AND o.send_after <= now AND o.status = 'queued')
           OR (again AND EXISTS (SELECT FROM automation.outbox o
                                  WHERE o.channel = ch AND o.send_after <= now AND o.status = 'queued'))
           OR (NOT EXISTS (SELECT FROM automation.outbox o
                            WHERE o.channel = ch AND o.send_after <= since AND o.status = 'queued')
               AND EXISTS (SELECT FROM automation.outbox o
                            WHERE o.channel = ch AND o.send_after <= now AND o.status = 'leased'
                              AND o.lease_until > since AND o.lease_until <= now)) THEN
            PERFORM pg_notify('automation_outbox', ch);
            notified := notified + 1;
        END IF;
    END LOOP;
    UPDATE automation.outbox_notify SET notified_until = now;
    RETURN notified;
END
$$;
COMMENT ON FUNCTION automation.notify_due(timestamptz)
    IS 'NOTIFY automation_outbox (payload: the channel) for messages that became due since the last call; returns how many channels';

-- _caps_lookback(): how far back the frequency caps of the journeys look at
-- the sent marketing messages: automation.min_interval, and 7 days when
-- automation.max_per_week is set; zero with both off.  The steps stage reads
-- the messages of that window, and archive_outbox keeps them.
CREATE FUNCTION automation._caps_lookback()
RETURNS interval
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT greatest(current_setting('automation.min_interval')::interval,
                    CASE WHEN current_setting('automation.max_per_week')::integer > 0
                         THEN interval '7 days' ELSE interval '0' END)
$$;

-- archive_outbox: removes archived messages and events older than
-- automation.retention, the oldest automation.prune_batch messages at a
-- time.  A stage of the tick; returns how many messages were removed.
CREATE FUNCTION automation.archive_outbox(now timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    horizon timestamptz := now - (automation._outbox_settings()).retention;
    caps_from timestamptz;
    batch integer := current_setting('automation.prune_batch')::integer;
    -- the messages due to be pruned (given horizon and caps_from)
    due text := $d$a.finished_at < $1 AND (a.finished_at < $2 OR a.status <> 'sent' OR a.purpose <> 'marketing')$d$;
    n_due bigint;
    more boolean;
    upto timestamptz;
    pruned bigint;
BEGIN
    IF now IS NULL THEN
        RAISE EXCEPTION 'now must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM automation._check_finite(now, 'now');
    -- The frequency caps of the journeys look back at the sent marketing
    -- messages of their window (automation.min_interval, and 7 days for
    -- automation.max_per_week): those stay, however short the retention.
    caps_from := now - automation._caps_lookback();
    -- A pruned message's dedupe key may be taken again.  A sent marketing
    -- message that no open, click or order of its customer followed moves
    -- into the customer's streak in automation.pruned_unengaged (joined to
    -- the streak already there unless the customer engaged since it began).
    -- A journey's message leaves its counts in
    -- automation.journey_stats_pruned: sent or cancelled, its events, and
    -- whether a counted order followed within automation.attribution_window
    -- (as automation.journey_stats counts the messages still held).  Only
    -- when there is something to prune: the statement reads the shop's
    -- orders and the profiles, and a tick with nothing to prune (most
    -- ticks of a young shop) need not plan it or lock them.
    --
    -- The oldest go first, automation.prune_batch of them at most (and those
    -- that finished at the same moment as the last): a backlog, as after
    -- the retention was shortened, is worked off over several ticks instead
    -- of holding the tick's lock through one long one.  Then "upto" is the
    -- last finished_at pruned.  One read of the index on finished_at, in
    -- its order, answers both whether anything is due and where the batch
    -- ends: it stops after a batch and one.  (A separate EXISTS could be
    -- planned as a pass over the whole archive, where the statistics, not
    -- yet taken since the last prune, promise that a row due comes soon.)
    EXECUTE format($q$
        SELECT count(*), max(x.finished_at) FILTER (WHERE x.n = $3), bool_or(x.n > $3)
          FROM (SELECT a.finished_at, row_number() OVER (ORDER BY a.finished_at) AS n
                  FROM automation.outbox_archive a WHERE %s
                 ORDER BY a.finished_at LIMIT $3 + 1) x$q$, due)
       INTO n_due, upto, more
      USING horizon, caps_from, greatest(batch, 0);
    upto := CASE WHEN batch > 0 AND more THEN upto END;
    pruned := 0;
    IF n_due > 0 THEN
        EXECUTE format($q$
        WITH gone AS (
            DELETE FROM automation.outbox_archive a
             WHERE %2$s AND a.finished_at <= coalesce($4, 'infinity')
            RETURNING a.id, a.dedupe_key, a.customer_key, a.channel, a.finished_at, a.status, a.journey, a.step, a.variant,
                      a.status = 'sent' AND a.purpose = 'marketing' AS marketing_sent
        ), freed AS (
            -- (DISTINCT tells the planner the keys are distinct: it then
            -- hashes a batch's keys rather than the whole key table.)
            DELETE FROM automation.outbox_key k USING (SELECT DISTINCT g.dedupe_key, g.id FROM gone g) g
             WHERE k.dedupe_key = g.dedupe_key AND k.message_id = g.id
        ), carried AS (
            -- (the customer's last engagement once per message: OFFSET 0
            -- keeps the subquery from being pulled up into both the filter
            -- and the aggregate, each of which would look it up again)
            INSERT INTO automation.pruned_unengaged AS u (customer_key, channel, sends, first_at, last_at, engaged_at)
            SELECT g.customer_key, g.channel, count(*), min(g.finished_at), max(g.finished_at), max(e.at)
              FROM gone g
              LEFT JOIN automation.customer_profile p ON p.customer_key = g.customer_key
             CROSS JOIN LATERAL (SELECT greatest((SELECT max(ev.at) FROM automation.message_event ev
                                                   WHERE ev.event IN ('open', 'click') AND ev.customer_key = g.customer_key),
                                                 p.last_order_at) AS at
                                 OFFSET 0) e
             WHERE g.marketing_sent AND g.finished_at > coalesce(e.at, '-infinity')
             GROUP BY 1, 2
            ON CONFLICT ON CONSTRAINT pruned_unengaged_pkey DO UPDATE
               SET sends = CASE WHEN excluded.engaged_at >= u.first_at THEN 0 ELSE u.sends END + excluded.sends,
                   first_at = CASE WHEN excluded.engaged_at >= u.first_at THEN excluded.first_at ELSE u.first_at END,
                   last_at = greatest(u.last_at, excluded.last_at),
                   engaged_at = excluded.engaged_at
        ), counted AS (
            INSERT INTO automation.journey_stats_pruned AS t (journey, step, variant, sent, cancelled, delivered, opened,
                                                              clicked, unsubscribed, converted, revenue)
            SELECT g.journey, g.step, coalesce(g.variant, ''),
                   count(*) FILTER (WHERE g.status = 'sent'), count(*) FILTER (WHERE g.status = 'cancelled'),
                   count(*) FILTER (WHERE ev.delivered), count(*) FILTER (WHERE ev.opened),
                   count(*) FILTER (WHERE ev.clicked), count(*) FILTER (WHERE ev.unsubscribed),
                   count(*) FILTER (WHERE cv.converted), coalesce(sum(cv.revenue) FILTER (WHERE cv.converted), 0)
              FROM gone g
              LEFT JOIN (SELECT ev.message_id, bool_or(ev.event = 'delivered') AS delivered, bool_or(ev.event = 'open') AS opened,
                                bool_or(ev.event = 'click') AS clicked, bool_or(ev.event = 'unsubscribe') AS unsubscribed
                           FROM automation.message_event ev
                          WHERE ev.message_id IN (SELECT g.id FROM gone g WHERE g.journey IS NOT NULL AND g.step IS NOT NULL)
                          GROUP BY 1) ev ON ev.message_id = g.id
              LEFT JOIN LATERAL (SELECT count(*) > 0 AS converted, sum(ord.total) AS revenue
                                   FROM (%1$s) ord
                                  WHERE g.status = 'sent' AND ord.customer_key = g.customer_key
                                    AND ord.placed_at > g.finished_at AND ord.placed_at <= g.finished_at + $3) cv ON true
             WHERE g.journey IS NOT NULL AND g.step IS NOT NULL
             GROUP BY 1, 2, 3
            ON CONFLICT ON CONSTRAINT journey_stats_pruned_pkey DO UPDATE
               SET sent = t.sent + excluded.sent, cancelled = t.cancelled + excluded.cancelled,
                   delivered = t.delivered + excluded.delivered, opened = t.opened + excluded.opened,
                   clicked = t.clicked + excluded.clicked, unsubscribed = t.unsubscribed + excluded.unsubscribed,
                   converted = t.converted + excluded.converted, revenue = t.revenue + excluded.revenue
        )
        SELECT count(*) FROM gone$q$, automation._counted_orders_sql(), due)
          INTO pruned
         USING horizon, caps_from, current_setting('automation.attribution_window')::interval, upto;
    END IF;
    -- Events go once no message they may belong to is left to prune: those
    -- of a message pruned later still count for it, in
    -- automation.journey_stats_pruned and as its customer's engagement.  So
    -- not before the sent marketing messages the caps keep, and not past
    -- the last message of a batch with more to come.  An open or click
    -- pruned here ends the streaks it came after (the tick could no longer
    -- see it).
    WITH gone AS (
        DELETE FROM automation.message_event e WHERE e.at < least(horizon, caps_from, upto)
        RETURNING e.customer_key, e.event, e.at
    )
    DELETE FROM automation.pruned_unengaged u
     USING (SELECT g.customer_key, max(g.at) AS at FROM gone g WHERE g.event IN ('open', 'click') GROUP BY 1) g
     WHERE u.customer_key = g.customer_key AND u.first_at <= g.at;
    RETURN pruned;
END
$$;
COMMENT ON FUNCTION automation.archive_outbox(timestamptz)
    IS 'remove archived messages (the oldest automation.prune_batch at most) and message events older than automation.retention; returns the number of messages removed';

CREATE VIEW automation.outbox_dead AS
SELECT a.id, a.customer_key, a.channel, a.recipient, a.template, a.purpose, a.dedupe_key, a.attempts,
       a.last_error, a.errors, a.created_at, a.finished_at AS died_at
  FROM automation.outbox_archive a
 WHERE a.status = 'dead';
COMMENT ON VIEW automation.outbox_dead IS 'messages given up after automation.max_attempts handouts, with every error';

CREATE VIEW automation.outbox_stats AS
WITH hot AS (
    SELECT o.channel,
           count(*) FILTER (WHERE o.status = 'queued' AND o.send_after <= now()) AS due,
           count(*) FILTER (WHERE o.status = 'queued' AND o.send_after > now()) AS scheduled,
           count(*) FILTER (WHERE o.status = 'leased' AND o.lease_until > now()) AS leased,
           count(*) FILTER (WHERE o.status = 'leased' AND o.lease_until <= now()) AS lease_expired,
           now() - min(coalesce(o.lease_until, o.send_after)) FILTER (WHERE coalesce(o.lease_until, o.send_after) <= now()) AS oldest_due_age
      FROM automation.outbox o
     GROUP BY o.channel
), done AS (
    SELECT a.channel,
           count(*) FILTER (WHERE a.status = 'sent') AS sent,
           count(*) FILTER (WHERE a.status = 'dead') AS dead,
           count(*) FILTER (WHERE a.status = 'cancelled') AS cancelled
      FROM automation.outbox_archive a
     GROUP BY a.channel
), reasons AS (
    SELECT r.channel, jsonb_object_agg(r.reason, r.n ORDER BY r.reason) AS cancelled_by_reason
      FROM (SELECT a.channel, a.reason, count(*) AS n
              FROM automation.outbox_archive a
             WHERE a.status = 'cancelled'
             GROUP BY a.channel, a.reason) r
     GROUP BY r.channel
)
SELECT coalesce(h.channel, d.channel) AS channel,
       coalesce(h.due, 0) AS due,
       coalesce(h.scheduled, 0) AS scheduled,
       coalesce(h.leased, 0) AS leased,
       coalesce(h.lease_expired, 0) AS lease_expired,
       coalesce(d.sent, 0) AS sent,
       coalesce(d.dead, 0) AS dead,
       coalesce(d.cancelled, 0) AS cancelled,
       coalesce(r.cancelled_by_reason, '{}') AS cancelled_by_reason,
       h.oldest_due_age
  FROM hot h
  FULL JOIN done d ON d.channel = h.channel
  LEFT JOIN reasons r ON r.channel = coalesce(h.channel, d.channel)
 ORDER BY 1;
COMMENT ON VIEW automation.outbox_stats IS 'per channel: messages due, scheduled, leased, with expired leases; sent, dead and cancelled (by reason) in the archive; the age of the oldest due message';

INSERT INTO automation.access_rule VALUES
    ('mailer', 'FUNCTION automation.claim(integer, interval, text, timestamptz)', 'EXECUTE'),
    ('mailer', 'FUNCTION automation.ack(bigint[], timestamptz)', 'EXECUTE'),
    ('mailer', 'FUNCTION automation.fail(bigint, text, interval, timestamptz, integer)', 'EXECUTE'),
    ('mailer', 'FUNCTION automation.track(bigint, text, timestamptz, jsonb)', 'EXECUTE'),
    ('mailer', 'FUNCTION automation.suppress(text, text, timestamptz)', 'EXECUTE'),
    ('mailer', 'automation.outbox_stats', 'SELECT'),
    ('mailer', 'automation.outbox_dead', 'SELECT'),
    ('analyst', 'automation.outbox_stats', 'SELECT'),
    -- analysts read no addresses (they cannot read the shop's customers either)
    -- (not the errors either: a mail server's quotes the address it refused)
    ('analyst', 'automation.outbox_dead', 'SELECT (id, customer_key, channel, template, purpose, dedupe_key, attempts, created_at, died_at)');
