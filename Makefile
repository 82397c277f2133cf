# Two entry points: `make demo` (demo campaign end to end → results/report/) and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
CORES  ?= 2
STAMP  := $(VENV)/.installed
# Snakemake rules call the `rewarddiff` console script of this virtualenv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install demo test lint clean-demo

$(PY):
	python3 -m venv $(VENV)

# torch is installed first at the CPU build found on local disk; a bare `torch` requirement
# would pull a multi-GB CUDA build. dnadiffusion and modlamp pin old dependencies: only their
# data files are read.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps --pre dnadiffusion
	$(PY) -m pip install -q --no-deps 'modlamp>=4.3.3'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/snakemake --snakefile Snakefile --configfile config/demo/config.yaml \
		--profile workflow/profiles/default --cores $(CORES)
	$(VENV)/bin/snakemake --snakefile Snakefile --configfile config/demo/config.yaml \
		--cores 1 --report results/report.html
	@echo "Report: $(CURDIR)/results/report/summary.md (tables, CSVs and plots/ beside it; HTML: results/report.html)"

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
