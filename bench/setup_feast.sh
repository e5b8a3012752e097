#!/usr/bin/env bash
# Creates bench/.venv-feast: Feast 0.67 with its Spark offline store (extra "spark": pyspark)
# and DynamoDB online store (extra "aws": boto3, fsspec, aiobotocore), in a virtualenv of its
# own so that its pins never touch featurelake's .venv. Idempotent: a second call returns at once.
#
# pyspark is pinned to featurelake's own version (4.0.1), so both sides run the same Spark;
# pandas < 3 because pyspark 4.0's Arrow conversion falls back to the slow path with pandas 3.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="$HERE/.venv-feast"
PYTHON="${PYTHON:-python3}"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import feast, pyspark, boto3; assert feast.__version__.startswith('0.67')" 2>/dev/null; then
  exit 0
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet 'feast[spark,aws]==0.67.0' 'pyspark==4.0.1' 'pandas>=2.2,<3'
"$VENV/bin/python" -c "import feast, pyspark; print('feast', feast.__version__, 'pyspark', pyspark.__version__)"
