-- Run once by the postgres image on an empty data directory (docker-compose.yml mounts it into
-- /docker-entrypoint-initdb.d). One database per service; each service creates its own tables
-- with its Alembic migrations when it starts.
CREATE DATABASE auth;
CREATE DATABASE billing;
CREATE DATABASE payments;
CREATE DATABASE documents;
