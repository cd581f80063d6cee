"""Suite-wide set-up."""

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_contract_cache(tmp_path_factory):
    """Each test process (and the `capdsl` processes it starts) gets its own compiled-contract cache,
    so the suite neither reads nor fills the user's ~/.cache/capdsl."""
    os.environ["CAPDSL_CACHE_DIR"] = str(tmp_path_factory.mktemp("capdsl-cache"))
