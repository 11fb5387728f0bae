"""Loaded by the benchmark's nameko processes and its monolith only (bench/stack.py and
bench/portal.py put this folder on their PYTHONPATH): counts the SQL round trips each process makes,
for the portal benchmark's "sum of its parts". Counters live in a small file per process
(BENCH_SQL_COUNTS/<pid>) that the benchmark reads; production code is untouched.

Nothing is imported here at start-up: `nameko run` must monkey-patch before SQLAlchemy is imported,
so the listeners are attached right after the program itself first imports sqlalchemy.
"""

import os
import sys

FIELDS = ("statements", "begins", "commits", "rollbacks", "checkouts")


def _counters(path):
    """The counters as native 64-bit integers in the file itself: one add per event (the benchmark
    reads them little-endian, as every machine it runs on is)."""
    import mmap

    with open(path, "wb") as f:
        f.write(b"\0" * 8 * len(FIELDS))
    with open(path, "r+b") as f:
        return memoryview(mmap.mmap(f.fileno(), 8 * len(FIELDS))).cast("Q")


def _attach():
    import threading

    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    state = {"pid": None, "counts": None}
    # A process's threads may all make their first statement at once (the file is made once), and an
    # add from two threads at once must not lose one.
    lock = threading.Lock()

    def bump(index):
        with lock:
            if state["pid"] != os.getpid():  # first use in this process
                state["counts"] = _counters(os.path.join(os.environ["BENCH_SQL_COUNTS"], str(os.getpid())))
                state["pid"] = os.getpid()
            state["counts"][index] += 1

    def in_transactions(dbapi_connection):
        """A connection in autocommit (chassis/db.py's pool for one-statement reads) sends no BEGIN,
        COMMIT or ROLLBACK, and no scope statement at checkout: only its statements go to the server."""
        return not getattr(dbapi_connection, "autocommit", False)

    event.listen(Engine, "before_cursor_execute", lambda *a, **k: bump(0))
    # psycopg2 sends BEGIN before the transaction's first statement
    event.listen(Engine, "begin", lambda conn: in_transactions(conn.connection.dbapi_connection) and bump(1))
    event.listen(Engine, "commit", lambda conn: in_transactions(conn.connection.dbapi_connection) and bump(2))
    event.listen(Engine, "rollback", lambda conn: in_transactions(conn.connection.dbapi_connection) and bump(3))
    # the scope statement at checkout (chassis/db.py)
    event.listen(Pool, "checkout", lambda dbapi_conn, *a: in_transactions(dbapi_conn) and bump(4))


class _AfterSqlalchemy:
    """A meta-path finder that only wraps the loading of the `sqlalchemy` package."""

    def find_spec(self, name, path=None, target=None):
        if name != "sqlalchemy":
            return None
        sys.meta_path.remove(self)
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader_exec = spec.loader.exec_module

        def exec_module(module):
            loader_exec(module)
            _attach()

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("BENCH_SQL_COUNTS"):
    sys.meta_path.insert(0, _AfterSqlalchemy())
