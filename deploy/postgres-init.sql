-- Run once by the postgres image on an empty data directory (docker-compose.yml mounts it into
-- /docker-entrypoint-initdb.d). One database per service, owned by a login role of its own; each
-- service creates its own tables with its Alembic migrations when it starts. The roles are neither
-- superuser nor BYPASSRLS: PostgreSQL's row-level security does nothing for those. The passwords are
-- for this local compose stack (trust authentication); set real ones anywhere else.
CREATE ROLE auth LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD 'auth';
CREATE ROLE billing LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD 'billing';
CREATE ROLE payments LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD 'payments';
CREATE ROLE documents LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD 'documents';
CREATE DATABASE auth OWNER auth;
CREATE DATABASE billing OWNER billing;
CREATE DATABASE payments OWNER payments;
CREATE DATABASE documents OWNER documents;
