#!/bin/sh
# Run by the postgres image once, when its data volume is first initialised
# (/docker-entrypoint-initdb.d): creates the roles and databases of least-privilege.sql.
set -eu
psql --username "$POSTGRES_USER" --dbname postgres \
    -v migrator=todo_migrator -v auth_role=todo_auth_service -v task_role=todo_task_service \
    -v auth_db=todo_auth -v task_db=todo_tasks \
    -v migrator_password="$MIGRATOR_DB_PASSWORD" \
    -v auth_password="$AUTH_DB_PASSWORD" \
    -v task_password="$TASK_DB_PASSWORD" \
    -f /etc/todo/least-privilege.sql
