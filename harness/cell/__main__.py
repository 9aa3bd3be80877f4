"""`python -m harness.cell`: one cell, driven by the runner (see harness.cell.main)."""

from harness.cell.main import main

main()
