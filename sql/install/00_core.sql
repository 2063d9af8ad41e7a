-- automation: install script of the version under development.
--
-- Assembled by the Makefile from sql/install/*.sql in file-name order, one
-- piece per responsibility.  Every object is schema-qualified and every
-- function runs with search_path = pg_catalog, pg_temp, so nothing resolves
-- through the caller's search_path.

\echo Use "CREATE EXTENSION automation" to load this file. \quit

COMMENT ON SCHEMA automation IS 'customer automations of a web shop: bindings, profiles, segments, journeys, outbox';

-- Nothing in the schema is visible to PUBLIC: a role gets what its job needs
-- through automation.grant_access(role, access).
REVOKE ALL ON SCHEMA automation FROM PUBLIC;

-- What each kind of access consists of.  Every install piece adds the rows
-- for the objects it creates, so the grants live next to the objects.
CREATE TABLE automation.access_rule (
    access text NOT NULL,
    object text NOT NULL,
    privilege text NOT NULL,
    CONSTRAINT access_rule_pkey PRIMARY KEY (access, object, privilege),
    CONSTRAINT access_rule_access_check CHECK (access IN ('analyst', 'mailer')),
    -- SELECT (columns): a view some of whose columns the role may not read
    CONSTRAINT access_rule_privilege_check CHECK (privilege IN ('SELECT', 'EXECUTE', 'USAGE')
                                                  OR privilege ~ '^SELECT \([a-z_, ]+\)$')
);
COMMENT ON TABLE automation.access_rule IS 'the privileges that automation.grant_access() grants for each kind of access';

INSERT INTO automation.access_rule VALUES
    ('analyst', 'SCHEMA automation', 'USAGE'),
    ('mailer', 'SCHEMA automation', 'USAGE');

-- grant_access(role, access): grants a role what one kind of work needs:
-- 'analyst' reads profiles, segments, statistics and bindings; 'mailer'
-- claims, acknowledges and tracks outbox messages.  Neither can change the
-- configuration or read the shop's own tables through the extension.
CREATE FUNCTION automation.grant_access(role regrole, access text)
RETURNS SETOF text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    stmt text;
BEGIN
    IF role IS NULL OR access IS NULL THEN
        RAISE EXCEPTION 'role and access must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT FROM automation.access_rule a WHERE a.access = grant_access.access) THEN
        RAISE EXCEPTION 'unknown access "%"', access
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Access is one of: ' || (SELECT string_agg(DISTINCT a.access, ', ' ORDER BY a.access) FROM automation.access_rule a) || '.';
    END IF;
    FOR r IN SELECT a.object, a.privilege FROM automation.access_rule a
             WHERE a.access = grant_access.access ORDER BY a.object LIKE 'SCHEMA%' DESC, a.object
    LOOP
        stmt := format('GRANT %s ON %s TO %s', r.privilege, r.object, role);
        EXECUTE stmt;
        RETURN NEXT stmt;
    END LOOP;
END
$$;
COMMENT ON FUNCTION automation.grant_access(regrole, text) IS 'grant a role the privileges of one kind of access (analyst, mailer); returns the GRANT statements run';
REVOKE ALL ON FUNCTION automation.grant_access(regrole, text) FROM PUBLIC;

-- _check_finite(moment, what): a moment a function is asked to act at, or
-- to record, must be a time: at infinity, what it records (a refresh, a
-- score, a segment's clock, a message's send time) would hold back every
-- later call, or wait for ever.
CREATE FUNCTION automation._check_finite(moment timestamptz, what text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT isfinite(moment) THEN
        RAISE EXCEPTION '% must be a finite time, not %', what, moment
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- _load(): loads the library, and with it the automation.* settings and
-- their checks.  Without shared_preload_libraries a session's SET of one
-- is taken unchecked until then (an unknown time zone, say); loaded, the
-- library warns of such a value and puts the default in its place.
CREATE FUNCTION automation._load()
RETURNS void
LANGUAGE c
AS 'MODULE_PATHNAME', 'automation_load';

-- _is_word(s, max_length): whether s is a lower-case word of at most
-- max_length bytes -- a letter a-z, then letters, digits and underscores --
-- as '^[a-z][a-z0-9_]{0,max_length - 1}$' matches it.  Channels, journey
-- and segment names and tags are such words; the check reads the bytes
-- (src/automation.c), for a fraction of the regular expression's cost.
CREATE FUNCTION automation._is_word(s text, max_length integer)
RETURNS boolean
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'automation_is_word';
