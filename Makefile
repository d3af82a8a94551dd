# Two commands do all the set-up: `make run` and `make test`.
# Each creates .venv when missing and installs torch (CPU build) first, then the project with its
# dev extras; the stamp file makes a second call skip the install until pyproject.toml changes.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH  := torch==2.13.0
# the pretrained MusiCNN weights ship in this wheel; its metadata pins numpy<1.17 and tensorflow,
# neither of which the PyTorch port needs, hence --no-deps
MUSICNN := musicnn==0.1.0

.PHONY: run test test-scaleout lint format ui clean-data browser

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps $(MUSICNN)
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/benchmark run --suite all

# headless Chromium renders results/<dataset>/report.html in the report test (Debian package)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: the report-rendering test will be skipped (run as root or apt-get install chromium)"; fi; }

test: $(STAMP) browser
	$(BIN)/pytest

# the PostgreSQL (pgserver) and Dask (LocalCluster) tests alone; see docs/scale-out.md
test-scaleout: $(STAMP)
	$(BIN)/pytest -m "postgres or dask"

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

ui: $(STAMP)
	$(BIN)/benchmark ui

clean-data:
	rm -rf data/demo mlflow.db mlartifacts
