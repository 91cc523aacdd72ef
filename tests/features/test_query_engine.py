"""The offline store's DuckDB engine is released once the last query of the process is done."""

from __future__ import annotations

import threading

import ibis

from lockgate.features.query_engine import offline_query


def _engine_with_a_table() -> object:
    con = ibis.duckdb.connect()
    ibis.set_backend(con)
    con.raw_sql("create table t as select range as x from range(1000)")
    return con


def test_the_engine_is_closed_after_the_last_query_and_reopens() -> None:
    with offline_query():
        con = _engine_with_a_table()
        with offline_query():  # a nested (or concurrent) query keeps the engine open
            pass
        assert ibis.options.default_backend is con
        assert con.raw_sql("select count(*) from t").fetchone() == (1000,)
    assert ibis.options.default_backend is None  # released: DuckDB's buffers went with it
    with offline_query():
        fresh = _engine_with_a_table()
        assert fresh is not con
        assert fresh.raw_sql("select sum(x) from t").fetchone() == (499500,)
    assert ibis.options.default_backend is None


def test_a_query_in_another_thread_keeps_the_engine_open_until_it_ends() -> None:
    started, finish = threading.Event(), threading.Event()

    def other() -> None:
        with offline_query():
            started.set()
            finish.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    started.wait(10)
    with offline_query():
        con = _engine_with_a_table()
    assert ibis.options.default_backend is con  # the other thread's query still runs
    finish.set()
    thread.join(10)
    assert ibis.options.default_backend is None


def test_release_false_leaves_the_engine_open() -> None:
    with offline_query(release=False):
        con = _engine_with_a_table()
    assert ibis.options.default_backend is con
    with offline_query():
        pass
    assert ibis.options.default_backend is None
