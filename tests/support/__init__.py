"""What the tests share that is not a fixture: helpers, servers, models of the stack.

Fixtures stay in tests/conftest.py; test modules import only from here (and from the
code under test), never from one another.
"""
