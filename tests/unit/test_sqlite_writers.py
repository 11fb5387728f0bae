"""The embedded database under concurrent writers: in an eventlet process (as every service runs)
writers queue cooperatively, and another process holding the file's lock does not freeze it."""

import json
import subprocess
import sys
import textwrap

import sqlalchemy as sa

from chassis import sqlite
from chassis.db import UnitOfWork, make_engine

GREEN_WRITERS = textwrap.dedent("""
    import eventlet
    eventlet.monkey_patch()
    import json, sys, time
    import sqlalchemy as sa
    from chassis.db import UnitOfWork, make_engine

    engine = make_engine(sys.argv[1])
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE notes (id INTEGER PRIMARY KEY, writer INTEGER, step INTEGER)"))
    ticks, errors = [], []

    def heartbeat():  # stops ticking if anything blocks the hub
        while True:
            ticks.append(time.monotonic())
            eventlet.sleep(0.01)

    def writer(n):
        try:
            with UnitOfWork(engine) as uow:
                uow.execute(sa.text("SELECT count(*) FROM notes")).scalar_one()  # a read first, as handlers do
                uow.execute(sa.text("INSERT INTO notes (writer, step) VALUES (:n, 1)"), {"n": n})
                eventlet.sleep(0.02)  # yields while holding the write lock (an RPC, a Stripe call)
                uow.execute(sa.text("INSERT INTO notes (writer, step) VALUES (:n, 2)"), {"n": n})
                uow.commit()
        except Exception as exc:
            errors.append(repr(exc))

    beat = eventlet.spawn(heartbeat)
    started = time.monotonic()
    pool = eventlet.GreenPool(16)
    for n in range(60):
        pool.spawn(writer, n)
    pool.waitall()
    beat.kill()
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT count(*) FROM notes")).scalar_one()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    print(json.dumps({"errors": errors, "rows": rows, "longest_gap": max(gaps), "seconds": time.monotonic() - started}))
""")


def test_sixty_green_writers_queue_without_freezing_the_process(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", GREEN_WRITERS, f"sqlite:///{tmp_path / 'w.sqlite3'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["errors"] == [] and outcome["rows"] == 120
    # the heartbeat kept running: no writer ever waited in C for the lock (a frozen hub stops it for seconds)
    assert outcome["longest_gap"] < 1.0, outcome


def test_a_writer_waits_out_another_process_holding_the_lock(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (v INTEGER)"))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import sqlite3, sys, time
        db = sqlite3.connect({str(tmp_path / "x.sqlite3")!r}, isolation_level=None)
        db.execute("BEGIN IMMEDIATE"); db.execute("INSERT INTO t VALUES (1)")
        print("holding", flush=True); time.sleep(0.5); db.execute("COMMIT")
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "holding"
    with UnitOfWork(engine) as uow:  # retried every RETRY_EVERY until the other process commits
        uow.execute(sa.text("INSERT INTO t VALUES (2)"))
        uow.commit()
    holder.wait(10)
    with engine.connect() as conn:
        assert sorted(conn.execute(sa.text("SELECT v FROM t")).scalars()) == [1, 2]


def test_a_unit_of_work_that_writes_inside_another_writing_one_is_refused_not_hung(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'n.sqlite3'}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (v INTEGER)"))
    with UnitOfWork(engine) as outer:
        outer.execute(sa.text("INSERT INTO t VALUES (1)"))
        with UnitOfWork(engine) as inner:
            try:
                inner.execute(sa.text("INSERT INTO t VALUES (2)"))
                raise AssertionError("the nested writer should have been refused")
            except sa.exc.OperationalError as exc:
                assert "nested" in str(exc)
        outer.commit()
    with UnitOfWork(engine) as after:  # the gate was released: the next writer goes through
        after.execute(sa.text("INSERT INTO t VALUES (3)"))
        after.commit()
    with engine.connect() as conn:
        assert sorted(conn.execute(sa.text("SELECT v FROM t")).scalars()) == [1, 3]


def test_only_writes_take_the_gate():
    writes = [
        "INSERT INTO t VALUES (1)",
        "  update t set v = 2",
        "DELETE FROM t",
        "REPLACE INTO t VALUES (1)",
        "SAVEPOINT sa_1",
        "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
    ]
    reads = [
        "SELECT * FROM t",
        "PRAGMA foreign_keys=ON",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "SELECT 'INSERT' FROM t",
    ]
    assert [bool(sqlite._WRITE.match(sql)) for sql in writes] == [True] * len(writes)
    assert [bool(sqlite._WRITE.match(sql)) for sql in reads] == [False] * len(reads)
