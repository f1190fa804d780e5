"""Under pytest, run from a scratch directory as trial does (_trial_temp), so that TestCase.mktemp()
and anything written relative to the current directory stay out of the source tree."""
import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _scratch_cwd(tmp_path_factory):
    previous = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(previous)
