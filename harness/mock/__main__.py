"""`python -m harness.mock`: the mock server child process (see harness.mock.serve)."""

from harness.mock.serve import main

main()
