# The two commands a new user needs:  `make run`  and  `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DYNALITE := $(VENV)/.dynalite-installed
NNCF     := $(VENV)/tools/nncf/.installed

.PHONY: setup run demo test test-fast bench soak clean

setup: $(STAMP) $(DYNALITE) $(NNCF)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[aws,templates,test,onnx,openvino]'
	touch $(STAMP)

# NNCF for `livewatch model quantize`, in a venv of its own: its pins clash with MXNet's numpy.
$(NNCF): $(STAMP)
	$(PYTHON) -m venv $(VENV)/tools/nncf
	$(VENV)/tools/nncf/bin/pip install --quiet 'nncf==3.4.0' "openvino==$$($(BIN)/python -c 'import openvino; print(openvino.__version__.split("-")[0])')"
	touch $@

# dynalite (npm), a second DynamoDB for the dynamodb sink's tests, into the venv (needs node/npm).
$(DYNALITE): $(STAMP) livewatch/testing/dynalite.py
	$(BIN)/python -m livewatch.testing.dynalite
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

test: $(STAMP) $(DYNALITE) $(NNCF)
	$(BIN)/pytest

test-fast: $(STAMP) $(DYNALITE) $(NNCF)
	$(BIN)/pytest -m "not slow"

# The benchmark against the reference pipeline (issue 6); QUICK=1 for a few-minute smoke run.
# It installs its own extra (decord for the reference, ONNX Runtime) into the venv first.
bench: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks.bench $(if $(QUICK),--quick) $(BENCH_ARGS)

$(VENV)/.bench-installed: $(STAMP) $(NNCF)
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

# Issue 7's soak: 4 live streams for 10 minutes through the real daemon (MINUTES= to change).
soak: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks.soak --streams 4 --minutes $(or $(MINUTES),10)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
