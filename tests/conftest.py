# SPDX-License-Identifier: Apache-2.0
"""Options shared by every test tier."""


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/fixtures/golden/* from this run (tests/unit/test_golden.py)")
