"""featurelake's benchmarks against Feast and against the floor: `make bench SCALE=small|medium`.

bench/run.py drives everything; bench/workloads/ holds one module per workload of issue 7;
bench/feast_side.py is Feast's side, run in its own virtualenv (bench/.venv-feast).
"""
