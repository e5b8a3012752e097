"""One module per workload of issue 7; each has `run(ctx) -> list[Row]` plus the featurelake-side
functions and checks that tests/integration/test_bench_small.py reuses at a tiny scale."""
