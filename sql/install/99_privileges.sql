-- Privileges: no function of the extension is executable by PUBLIC.  The
-- superuser who installed it administers it; other roles get exactly what
-- automation.grant_access() grants them (rows of automation.access_rule).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA automation FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA automation FROM PUBLIC;
