# Every target sets itself up: a .venv in the repo root, pinned by constraints.txt (CPU torch only), and the Colin27
# brain (Debian package mricron-data) that the realistic data are built from.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
COLIN27 := /usr/share/mricron/templates/ch2better.nii.gz
export OMP_NUM_THREADS ?= 2
# OpenMP spin-waiting collapses throughput when the cores are shared: wait passively
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install data-packages demo test test-fast bench evaluate clean

$(STAMP): setup.cfg constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

# The Colin27 single-subject brain (BSD-3) installed the way a Debian/Ubuntu user would; elsewhere one sentence says
# what to install (set MONAI_INR_COLIN27_DIR to a folder holding ch2better.nii.gz, ch2.nii.gz and ch2bet.nii.gz).
data-packages:
	@if [ -f "$(COLIN27)" ] || [ -n "$$MONAI_INR_COLIN27_DIR" ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing the Debian package mricron-data (the Colin27 brain of the realistic data)"; \
		(apt-get install -y -q mricron-data >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q mricron-data >/dev/null 2>&1)) || \
		echo "note: apt-get could not install mricron-data; tests that need the Colin27 brain are skipped."; \
	elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then \
		sudo apt-get install -y -q mricron-data >/dev/null 2>&1 || \
		echo "note: apt-get could not install mricron-data; tests that need the Colin27 brain are skipped."; \
	else \
		echo "note: the realistic data need the Colin27 brain: install the Debian package mricron-data or set MONAI_INR_COLIN27_DIR (tests that need it are skipped)."; \
	fi

install: $(STAMP) data-packages

demo: install
	$(BIN)/python -m monai_inr.demo --output_dir runs/demo

test: install
	$(BIN)/python -m pytest -n 2 --dist loadgroup tests

# the fast lane: everything but the end-to-end bundle trainings and torchrun runs (make test stays the full suite)
test-fast: install
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not slow" tests

bench: install
	$(BIN)/python -m benchmarks.run --output_dir runs/bench

# Realistic evaluation of every SR bundle (bundles/<name>/configs/evaluate_realistic.json): held-out realistic subjects
# (Colin27 anatomy) and, for ArSSR, the real Colin27 scan, degraded physically (k-space truncation, slice profiles,
# noise at a white-matter SNR) and by the ArSSR paper's cubic protocol; cubic, trilinear and the method; reports under
# $(EVAL_ROOT)/<name>/eval/realistic/ (realistic.md or metrics_table.md / results.md, metrics.json, CSVs, figures).
# A bundle without a checkpoint in $(EVAL_ROOT)/<name>/models/model.pt is first trained with its quick profile
# (EVAL_PROFILE, on the bundle's quick data); multi_contrast_inr fits each subject and needs no checkpoint.
EVAL_ROOT ?= runs/evaluate
EVAL_PROFILE ?= quick
EVAL_BUNDLES ?= arssr multi_contrast_inr nexus_inr dual_arbnet arrfr
# extra overrides for every evaluating run, e.g. EVAL_ARGS="--realistic_spacing 2.0 --realistic_num_test 1"
EVAL_ARGS ?=
evaluate: install
	@set -e; for b in $(EVAL_BUNDLES); do \
		C=bundles/$$b/configs; R=$(EVAL_ROOT)/$$b; P=$$C/$(EVAL_PROFILE).json; \
		case $$b in dual_arbnet|arrfr) E="'$$C/train.json','$$C/evaluate.json'";; *) E="'$$C/train.json'";; esac; \
		if [ $$b != multi_contrast_inr ] && [ ! -f $$R/models/model.pt ]; then \
			echo "== $$b: no checkpoint in $$R/models: training the $(EVAL_PROFILE) profile first"; \
			if [ $$b = arrfr ]; then T=run; else T="run training"; fi; \
			$(BIN)/python -m monai.bundle $$T --bundle_root $$R --config_file "['$$C/train.json','$$P']" \
				--meta_file $$C/metadata.json --logging_file $$C/logging.conf; \
		fi; \
		echo "== $$b: realistic evaluation"; \
		$(BIN)/python -m monai.bundle run evaluating --bundle_root $$R \
			--config_file "[$$E,'$$C/evaluate_realistic.json','$$P']" --logging_file $$C/logging.conf $(EVAL_ARGS); \
	done

clean:
	rm -rf runs .pytest_cache
