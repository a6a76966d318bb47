# The two commands a new user needs:  `make run`  and  `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DYNALITE := $(VENV)/.dynalite-installed

.PHONY: setup run demo test test-fast bench soak clean image-tools

setup: $(STAMP) $(DYNALITE) image-tools

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[aws,templates,test,onnx]'
	touch $(STAMP)

# dynalite (npm), a second DynamoDB for the dynamodb sink's tests, into the venv (needs node/npm).
$(DYNALITE): $(STAMP) livewatch/testing/dynalite.py
	$(BIN)/python -m livewatch.testing.dynalite
	touch $@

# buildah, podman and debootstrap (Debian packages) for tests/test_image.py, which really builds the
# image: installed when run as root and missing; otherwise setup fails, naming what to install.
IMAGE_TOOLS := buildah podman debootstrap
image-tools:
	@missing=""; for t in $(IMAGE_TOOLS); do PATH="$$PATH:/usr/sbin:/sbin" command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "error: missing:$$missing (for tests/test_image.py): as root, apt-get install -y$$missing" >&2; exit 1; fi; \
	fi

# The main job on the embedded default: folder source -> in-process I3D -> local store + stdout.
# MODEL=path/to/model (a directory, model.tar.gz or s3:// URI) overrides the model-zoo default.
run: $(STAMP)
	mkdir -p live
	$(BIN)/livewatch run --config livewatch.toml $(if $(MODEL),--model $(MODEL))

# Offline, no AWS: generate a labelled video set, train and package a small model, then classify a
# scripted live HLS stream with the daemon and print the timeline and accuracy. QUICK=1: faster.
demo: $(STAMP)
	$(BIN)/livewatch demo $(if $(QUICK),--quick)

test: $(STAMP) $(DYNALITE) image-tools
	$(BIN)/pytest

test-fast: $(STAMP) $(DYNALITE)
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
