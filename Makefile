# `make bench` and `make test` each work as the first command on a fresh clone:
# they create .venv (Python >= 3.11) and install the package with its dev, service (the example
# inference service's FastAPI, uvicorn, OpenCV) and cluster (dask.distributed) extras when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SCENARIOS ?= scenarios/lab.yaml scenarios/gil_cpu.yaml scenarios/gil_release.yaml \
             scenarios/gil_io.yaml scenarios/inference.yaml scenarios/race.yaml \
             scenarios/open_stall.yaml scenarios/crowd.yaml
# bench-full: every shipped scenario, each at least 5 repetitions
FULL_SCENARIOS ?= $(SCENARIOS) scenarios/gil_io_sweep.yaml scenarios/faults.yaml \
                  scenarios/free_threading_cpu.yaml

.PHONY: install test bench bench-full bench-self bench-service postgres postgres-stop python-ft \
        lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; assert sys.version_info >= (3, 11), "harness needs Python >= 3.11 (set PYTHON=...)"'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,service,cluster]'
	@touch $(STAMP)

install: $(STAMP)

# Two workers, one test file each (module fixtures stay in one worker).
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# A sitting's three steps (bench/sitting.py), each run whatever the others gave: `harness run`
# into $(1)/<UTC time>/, `bench.targets` (its verdicts and RUN/summary.md), the HTML report $(2).
# It exits with the worst status, 130 > 3 > 2 > 1 > 0; make then reports `Error N` and exits 2,
# as GNU make does for any failed recipe (`python -m bench.sitting` gives the exact status).
# $(3): the scenario files; $(4): options.
define bench_steps
	@$(BIN)/python -m bench.sitting --bin $(BIN) --root $(1) --html $(2) $(4) \
	  --command "make $@$(if $(filter-out file default,$(origin SCENARIOS)), SCENARIOS='$(SCENARIOS)')" $(3)
endef

# One run of every scenario into results/bench/<UTC time>/, the targets measured from it (exit 1
# when one is missed), its summary.md, and results/report.html (plots, tables, metadata).
bench: $(STAMP)
	$(call bench_steps,results/bench,results/report.html,$(SCENARIOS))

# The longer matrix: every scenario, 5 repetitions each (gil_io over 1, 10 and 50 included).
bench-full: $(STAMP)
	$(call bench_steps,results/bench-full,results/report-full.html,$(FULL_SCENARIOS),--repeat 5)

# The harness against its peers (wrk, Locust) and against itself, side by side in one sitting,
# at most 15 minutes; sets up wrk (apt) and Locust (bench/.venv-locust) itself. Not part of test.
# Writes results/bench-self/<UTC time>/bench-self.parquet and summary.md; exits 1 on a missed
# target, 2 when a peer cannot be set up, 3 when a section failed (0 with ARGS=--report-only).
bench-self: $(STAMP)
	$(BIN)/python -m bench.self $(ARGS)

# The real inference service (scenarios/fastapi_inference.yaml) against the throwaway PostgreSQL:
# the run, inline vs the thread and process pools, every database row counted. About 4 minutes.
bench-service: postgres
	$(BIN)/python -m bench.fastapi_inference --run $(ARGS)

# A throwaway PostgreSQL for `database: postgres` scenarios (bench/postgres.py): starts it (or
# finds it running), writes its DSN to .pg/dsn, where the harness looks when neither the
# scenario's dsn: nor $HARNESS_POSTGRES_DSN is given, and prints it. Exits 2 without the
# server binaries (Debian: apt-get install postgresql). postgres-stop removes it and .pg/.
postgres: $(STAMP)
	@$(BIN)/python -m bench.postgres start

postgres-stop: $(STAMP)
	@$(BIN)/python -m bench.postgres stop

# A free-threaded CPython (3.14, else 3.13: one line says so) in .pythons/cpython-<version>t/,
# its interpreter bin/python3.<minor>t (bench/python_ft.py, docs/interpreters.md): the upstream
# tarball of Debian's source package, checked against its .dsc, through a private apt config in
# .pythons/apt/; installs missing -dev packages (root). A few minutes; once built, only prints it.
# Exits 2 on a missing prerequisite, 1 on a failed download or build. rm -rf .pythons removes it.
python-ft: $(STAMP)
	@$(BIN)/python -m bench.python_ft

lint: $(STAMP)
	$(BIN)/ruff check harness tests bench examples
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
