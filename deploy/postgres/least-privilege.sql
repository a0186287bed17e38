-- Least privilege for the two services on one PostgreSQL server (run once, as a superuser,
-- by psql; docker-compose.yml runs it through init.sh when the data volume is first made):
--
--   * :migrator owns both databases and everything in them: only it can change a schema
--     (the `migrate` job connects as it);
--   * :auth_role may connect only to :auth_db, :task_role only to :task_db, and each may
--     read and write rows there but not create, alter or drop anything. The task-service's
--     role cannot even connect to the auth database (password hashes, signing keys).
--
-- Variables (psql -v): migrator, auth_role, task_role, auth_db, task_db (names) and
-- migrator_password, auth_password, task_password.

\set ON_ERROR_STOP on

CREATE ROLE :"migrator" LOGIN PASSWORD :'migrator_password';
CREATE ROLE :"auth_role" LOGIN PASSWORD :'auth_password';
CREATE ROLE :"task_role" LOGIN PASSWORD :'task_password';

CREATE DATABASE :"auth_db" OWNER :"migrator";
CREATE DATABASE :"task_db" OWNER :"migrator";
REVOKE ALL ON DATABASE :"auth_db" FROM PUBLIC;
REVOKE ALL ON DATABASE :"task_db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"auth_db" TO :"auth_role";
GRANT CONNECT ON DATABASE :"task_db" TO :"task_role";

\connect :"auth_db"
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER SCHEMA public OWNER TO :"migrator";
GRANT USAGE ON SCHEMA public TO :"auth_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"migrator" IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"auth_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"migrator" IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO :"auth_role";

\connect :"task_db"
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER SCHEMA public OWNER TO :"migrator";
GRANT USAGE ON SCHEMA public TO :"task_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"migrator" IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"task_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"migrator" IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO :"task_role";
