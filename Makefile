# Two commands for users: `make install` and `make run`; `make test` for CI.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install test run ingest eval bench fit lint clean

ONNX_MANIFEST := $(VENV)/share/rag/e5-onnx/manifest.json

install: $(STAMP) $(ONNX_MANIFEST)

# Re-run only when the project definition changes; torch first so pip takes the CPU
# build on this disk instead of a multi-GB CUDA build pulled by sentence-transformers.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	touch $(STAMP)

# The ONNX builds of the bundled weights (the default engine, and the opt-in e5-int8), made
# here in ~30 s with nothing downloaded; again whenever the recipe in rag/e5onnx.py changes.
$(ONNX_MANIFEST): $(STAMP) src/rag/e5onnx.py
	$(PY) -m rag.e5onnx > $(VENV)/e5onnx.log 2>&1 || (cat $(VENV)/e5onnx.log; exit 1)
	tail -n 1 $(VENV)/e5onnx.log

test: install
	$(PY) -m pytest

ingest: install
	$(VENV)/bin/rag ingest

run: install
	test -d .rag/chroma || $(VENV)/bin/rag ingest
	$(VENV)/bin/streamlit run app.py

eval: install
	$(VENV)/bin/rag eval --dataset evals/dev.jsonl --own-index --compare --report evals/reports/latest.md --json evals/reports/latest.json

# Refit fusion, reader and refusal from every tuning split (needs evals/fetch_real_docs.sh first).
TUNING := evals/tune.jsonl=corpus evals/tune-users.jsonl=corpus evals/conversations-tune.jsonl=corpus \
	evals/real-tune.jsonl=evals/realdocs/tune evals/real-tune-users.jsonl=evals/realdocs/tune \
	evals/reader-aptitude.jsonl=evals/realdocs/aptitude evals/reader-gimp.jsonl=evals/realdocs/gimp \
	evals/reader-lilypond.jsonl=evals/realdocs/lilypond-learning evals/reader-policy.jsonl=evals/policy-tune \
	evals/reader-plans.jsonl=evals/policy-tune evals/reader-agreements-faq.jsonl=evals/policy-tune \
	evals/reader-reports.jsonl=evals/policy-tune
fit: install
	$(VENV)/bin/rag fit $(addprefix --dataset ,$(TUNING))

bench: install
	$(VENV)/bin/rag bench --json evals/reports/bench.json

lint: install
	$(VENV)/bin/ruff check src tests app.py

clean:
	rm -rf .rag evals/reports/*.md evals/reports/*.json
