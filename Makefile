# Two entry points for a fresh machine:  `make run`  and  `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
CORES  ?= all
# pytest-xdist workers for the test suite (more than the cores: most of the slow tests wait on Slurm, DVC
# and Snakemake's job start-up rather than compute); TEST_WORKERS=0 runs it in this one process
TEST_WORKERS ?= 3

.PHONY: install run smoke test test-fast clean-results

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

# the default experiment (embedded digits, CPU): tables and figures land in reports/
# (a lock left by a killed run is released first, if no Snakemake runs here: pra/locks.py)
run: $(STAMP)
	. $(VENV)/bin/activate && python -m pra release-lock && snakemake --cores $(CORES) all

# the whole pipeline on a tiny configuration (about 9 minutes on 2 cores: docs/pipeline.md)
smoke: $(STAMP)
	. $(VENV)/bin/activate && snakemake --cores $(CORES) all --configfile experiments/smoke.yaml

test: $(STAMP)
	. $(VENV)/bin/activate && python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

# the unit and component tests only (no real Snakemake/DVC/Slurm/browser runs)
test-fast: $(STAMP)
	. $(VENV)/bin/activate && python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup -m "not slow"

clean-results:
	rm -rf results .snakemake
