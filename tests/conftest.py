"""Suite-wide set-up."""

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_contract_cache(tmp_path_factory):
    """Each test process (and the `capdsl` processes it starts) gets its own compiled-contract cache,
    so the suite neither reads nor fills the user's ~/.cache/capdsl."""
    os.environ["CAPDSL_CACHE_DIR"] = str(tmp_path_factory.mktemp("capdsl-cache"))


@pytest.fixture(scope="module")
def pg():
    """A throwaway PostgreSQL server for one test module (tests/sql_support.Postgres)."""
    from sql_support import Postgres

    try:
        server = Postgres().start()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"PostgreSQL is not available: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def spark():
    """A local Spark session with capdsl's settings, for one test module."""
    from capdsl.sql.spark_engine import available, spark_session

    why = available()
    if why:
        pytest.skip(why)
    session = spark_session("local[2]", app="capdsl-tests")
    yield session
    session.stop()
