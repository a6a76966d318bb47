# The two commands a new user needs:  `make run`  and  `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DYNALITE := $(VENV)/.dynalite-installed
TORCH    := $(VENV)/tools/torch/.installed

.PHONY: setup run demo test test-fast bench soak clean

setup: $(STAMP) $(DYNALITE) $(TORCH)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[aws,templates,test,onnx]'
	touch $(STAMP)

# dynalite (npm), a second DynamoDB for the dynamodb sink's tests, into the venv (needs node/npm).
$(DYNALITE): $(STAMP) livewatch/testing/dynalite.py
	$(BIN)/python -m livewatch.testing.dynalite
	touch $@

# The torch backend's tests (tests/test_torch_backend.py) run in .venv/tools/torch: .venv plus torch
# (its CPU build; the `gpu` extra). torch cannot join .venv: GluonCV 0.10 refuses to import beside
# torch 2. A .pth file puts .venv's packages on that venv's path, so only torch is installed there.
$(TORCH): $(STAMP)
	$(PYTHON) -m venv $(VENV)/tools/torch
	$(BIN)/python -c "import os, sysconfig; print(os.path.realpath(sysconfig.get_paths()['purelib']))" \
	  > "$$($(VENV)/tools/torch/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/livewatch-venv.pth"
	$(VENV)/tools/torch/bin/pip install --quiet 'torch==2.13.0'  # CI's disk holds its CPU build
	touch $@

# The main job on the embedded default: folder source -> in-process I3D -> local store + stdout.
# MODEL=path/to/model (a directory, model.tar.gz or s3:// URI) overrides the model-zoo default.
run: $(STAMP)
	mkdir -p live
	$(BIN)/livewatch run --config livewatch.toml $(if $(MODEL),--model $(MODEL))

# Offline, no AWS: generate a labelled video set, train and package a small model, then classify a
# scripted live HLS stream with the daemon and print the timeline and accuracy. QUICK=1: faster.
demo: $(STAMP)
	$(BIN)/livewatch demo $(if $(QUICK),--quick)

test: $(STAMP) $(DYNALITE) $(TORCH)
	$(BIN)/pytest

test-fast: $(STAMP) $(DYNALITE) $(TORCH)
	$(BIN)/pytest -m "not slow"

# The benchmark against the reference pipeline (issue 6); QUICK=1 for a few-minute smoke run.
# It installs its own extra (decord for the reference, ONNX Runtime) into the venv first.
bench: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks.bench $(if $(QUICK),--quick) $(BENCH_ARGS)

$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

# Issue 7's soak: 4 live streams for 10 minutes through the real daemon (MINUTES= to change).
soak: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks.soak --streams 4 --minutes $(or $(MINUTES),10)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
