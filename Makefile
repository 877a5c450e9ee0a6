# The two commands a user needs: `make run` (the whole default study) and `make test`.
PY_VERSION ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= config/config.yaml
CORES ?= all
PROFILE ?= workflow/profiles/default
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test test-quick lint install mlflow-ui dvc-repro bench clean report

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY_VERSION) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# First remove a lock a killed run left behind (SIGKILL, power cut), when no Snakemake works here any more; last,
# link what the study used into results/studies/<name>/ and, for a study params.yaml lists, record it in dvc.lock;
# then print the primary comparison in words and where the tables are.
run: $(STAMP)
	$(BIN)/python -m soteacher unlock-if-stale -- --configfile $(CONFIG) --workflow-profile $(PROFILE)
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG) --workflow-profile $(PROFILE)
	$(BIN)/python -m soteacher link-study --config $(CONFIG) --teachers --students --dvc-commit
	$(BIN)/python -m soteacher headline --config $(CONFIG)

# Snakemake's self-contained HTML report of a study (its tables, figures and captions): results/studies/<name>/
report: $(STAMP)
	$(BIN)/snakemake --report "$$($(BIN)/python -m soteacher report-path $(CONFIG))" --configfile $(CONFIG) \
		--workflow-profile $(PROFILE)

# Two pytest workers (pytest-xdist) keep both cores busy while a test waits on Snakemake, SLURM or a server; each
# test file stays on one worker (its module fixtures: one SLURM cluster, one served study). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# the quick tier, while editing: no test marked slow (Snakemake, DVC, SLURM, servers, ranks or other processes, whole
# jobs); `make test` (CI) runs them all
test-quick: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow" $(PYTEST_ARGS)

# ruff for the package, snakefmt for the rules; `snakemake --lint` runs in the tests (tests/test_rules.py)
lint: $(STAMP)
	$(BIN)/ruff check pipeline_src tests bench
	$(BIN)/snakefmt --check Snakefile workflow

bench: $(STAMP)
	$(BIN)/python -m bench.bench_soteacher_overhead
	$(BIN)/python -m bench.bench_shared_teacher
	$(BIN)/python bench/bench_loader.py
	$(BIN)/python -m bench.bench_orchestration
	$(BIN)/python -m bench.fault_resume
	$(BIN)/python -m bench.bench_ranks

dvc-repro: $(STAMP)
	$(BIN)/dvc repro

# Share results through a DVC remote (docs/share.md): `make push` uploads data, checkpoints and students;
# `make pull` downloads them, then marks them up to date for Snakemake (the files come back with fresh
# mtimes and no Snakemake metadata; --touch --forceall records both, without running a job).
.PHONY: pull push
push: $(STAMP)
	$(BIN)/dvc push

pull: $(STAMP)
	$(BIN)/dvc pull
	$(BIN)/python -m soteacher link-study --restore
	$(BIN)/snakemake all --touch --forceall --cores 1 --quiet --configfile $(CONFIG)

# The printed link opens the study's runs: MLflow 3.17 opens experiments on its GenAI pages (or click
# "Model training" at the top left once; the browser remembers it).
mlflow-ui: $(STAMP)
	@$(BIN)/python -m soteacher init-tracking --config $(CONFIG) --tracking-uri sqlite:///mlflow/mlflow.db \
		--ui http://127.0.0.1:5000
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow/mlflow.db --host 127.0.0.1 --port 5000

# MLflow tracking server for cluster runs (jobs log over HTTP instead of sharing the SQLite file):
#   make mlflow-server [HOST=0.0.0.0] [PORT=5000] [MLFLOW_SERVER_OPTS="--allowed-hosts login01:5000"]
# then, before snakemake: export MLFLOW_TRACKING_URI=http://<this host>:$(PORT)   (docs/cluster.md)
.PHONY: mlflow-server
mlflow-server: HOST ?= 127.0.0.1
mlflow-server: PORT ?= 5000
mlflow-server: $(STAMP)
	mkdir -p mlflow/artifacts
	$(BIN)/mlflow server --backend-store-uri sqlite:///mlflow/mlflow.db --artifacts-destination mlflow/artifacts \
		--host $(HOST) --port $(PORT) $(MLFLOW_SERVER_OPTS)

clean:
	rm -rf .snakemake logs
