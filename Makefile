# The two commands a new user needs:  `make run`  and  `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test test-fast bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[aws,templates,test]'
	touch $(STAMP)

# The main job on the embedded default: folder source -> in-process I3D -> local store + stdout.
# MODEL=path/to/model (a directory, model.tar.gz or s3:// URI) overrides the model-zoo default.
run: $(STAMP)
	mkdir -p live
	$(BIN)/livewatch run --config livewatch.toml $(if $(MODEL),--model $(MODEL))

test: $(STAMP)
	$(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
