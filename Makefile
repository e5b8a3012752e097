# featurelake developer entry points. Everything runs from .venv; stamp files make a second
# `make` reuse what the first one installed (pip reruns only when setup.cfg/pyproject.toml change).
#
#   make test            ruff and mypy (seconds), then unit + integration + e2e; the tests start their own services
#   make test-cluster    the same jobs on a Spark standalone cluster on loopback (slow)
#   make demo            services on the demo ports, then scripts/demo.py
#   make bench SCALE=... benchmarks (small by default)

PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
SCALE   ?= small
# The local services accept any credentials; real ones already in the environment are kept.
export AWS_ACCESS_KEY_ID ?= testing
export AWS_SECRET_ACCESS_KEY ?= testing
export AWS_DEFAULT_REGION ?= us-east-1
# `down` must work even without a venv: services.py needs only the standard library.
ANY_PY   = $(if $(wildcard $(PY)),$(PY),$(PYTHON))

.PHONY: setup demo test test-cluster bench services-install services-up services-down clean

setup: $(VENV)/.installed services-install $(VENV)/.jars $(VENV)/.kafka

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: setup.cfg $(wildcard pyproject.toml) | $(PY)
	$(PY) -m pip install -e '.[spark,dev]'
	touch $@

# Spark resolves its jars (Delta, hadoop-aws, JDBC driver) into the ivy cache once, not in every test.
$(VENV)/.jars: $(VENV)/.installed $(wildcard featurelake/spark.py)
	$(PY) -m featurelake.spark --prefetch
	touch $@

# The Kafka broker's jars (org.apache.kafka:kafka_2.13 and its dependencies), resolved by the Ivy
# that pyspark ships, from Maven Central, into the same cache folder as Spark's.
$(VENV)/.kafka: $(VENV)/.installed scripts/services.py
	$(PY) scripts/services.py install kafka
	touch $@

# Idempotent and fast when dynalite (npm) and postgresql (apt) are already there.
services-install: | $(PY)
	$(PY) scripts/services.py install

services-up: $(VENV)/.installed services-install
	$(PY) scripts/services.py up

services-down:
	$(ANY_PY) scripts/services.py down

demo: setup services-up
	$(PY) scripts/demo.py

test: setup
	$(PY) -m ruff check .
	$(PY) -m mypy featurelake
	$(PY) -m pytest tests -q --durations=30

test-cluster: setup
	$(PY) -m pytest tests -m cluster -q -s

bench: setup
	$(PY) bench/run.py --scale $(SCALE)

# Keeps .venv and .cache/node (installs, not state); stops the services before deleting their data.
clean: services-down
	rm -rf .featurelake .pytest_cache spark-warehouse metastore_db derby.log build dist *.egg-info
	find . -path ./.venv -prune -o -path ./.cache -prune -o -type d -name __pycache__ -print0 \
	  | xargs -0 rm -rf
