# The two commands a new user needs:  `make run`  and  `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DYNALITE := $(VENV)/.dynalite-installed
RTSP_SERVER := $(VENV)/.rtsp-server-installed
# checkov (the template tests' IaC scanner) in its own venv: its pins conflict with ours.
CHECKOV := $(VENV)/tools/checkov/bin/checkov
TORCH    := $(VENV)/tools/torch/.installed
NNCF     := $(VENV)/tools/nncf/.installed

.PHONY: setup servers image-tools chromium run demo test test-fast bench bench-windows soak clean

setup: servers image-tools chromium $(STAMP) $(DYNALITE) $(RTSP_SERVER) $(CHECKOV) $(TORCH) $(NNCF)

# The test servers' runtimes: Node.js/npm (dynalite), Java (SageMaker's multi-model-server) and
# the mosquitto MQTT broker (the mqtt sink's tests).
# Installed with apt when root; otherwise a missing one stops the set-up, saying what to install.
servers:
	@missing=""; command -v node >/dev/null && command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	command -v java >/dev/null || [ -n "$$JAVA_HOME" ] || missing="$$missing default-jre-headless"; \
	command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	  else echo "error: the tests need$$missing (install them, e.g. apt-get install$$missing)" >&2; exit 1; fi; \
	fi

# Debian's Chromium for the web page's browser test (tests/test_ui_browser.py, through Playwright;
# never `playwright install`): installed when root; otherwise setup fails, naming what to install.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "error: missing /usr/bin/chromium (for tests/test_ui_browser.py): as root, apt-get install -y chromium" >&2; exit 1; fi; \
	fi

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
# The stamp is written only when the install succeeded (the module exits non-zero otherwise).
$(DYNALITE): $(STAMP) livewatch/testing/dynalite.py
	$(BIN)/python -m livewatch.testing.dynalite && touch $@

$(CHECKOV): | $(STAMP)
	$(PYTHON) -m venv $(VENV)/tools/checkov
	$(VENV)/tools/checkov/bin/pip install --quiet 'checkov>=3,<4'

# GStreamer's RTSP server (Debian packages, run by /usr/bin/python3) for the rtsp source's tests:
# installed when missing and we are root; otherwise setup fails, naming what to install.
$(RTSP_SERVER): $(STAMP) livewatch/testing/rtsp_server.py
	@need=$$($(BIN)/python -c 'from livewatch.testing.rtsp_server import missing; print(missing() or "")'); \
	if [ -n "$$need" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$need --no-install-recommends; \
	  else echo "ERROR: the rtsp tests need GStreamer's RTSP server; as root run: $$need" >&2; exit 1; fi; \
	fi
	$(BIN)/python -c 'from livewatch.testing.rtsp_server import missing; assert not missing(), missing()'
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

# LIVEWATCH_REQUIRE_SERVERS=1: a missing test server fails its tests and any skip fails the run.
test: servers image-tools $(STAMP) $(DYNALITE) $(RTSP_SERVER) $(CHECKOV) $(TORCH) $(NNCF)
	LIVEWATCH_REQUIRE_SERVERS=1 $(BIN)/pytest

test-fast: servers image-tools $(STAMP) $(DYNALITE) $(RTSP_SERVER) $(CHECKOV) $(TORCH) $(NNCF)
	LIVEWATCH_REQUIRE_SERVERS=1 $(BIN)/pytest -m "not slow"

# The benchmark against the reference pipeline (issue 6); QUICK=1 for a few-minute smoke run.
# It installs its own extra (decord for the reference, ONNX Runtime) into the venv first.
bench: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks.bench $(if $(QUICK),--quick) $(BENCH_ARGS)

$(VENV)/.bench-installed: $(STAMP) $(NNCF)
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

# Issue 13: what seeing the whole segment costs, windows = "center" against "cover" (QUICK=1: 3 segments a mode).
bench-windows: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks.windows_bench $(if $(QUICK),--quick)

# Issue 7's soak: 4 live streams for 10 minutes through the real daemon (MINUTES= to change).
soak: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks.soak --streams 4 --minutes $(or $(MINUTES),10)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
