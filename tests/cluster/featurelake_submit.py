"""spark-submit entry point for any `featurelake` verb (apply, training-set, ...), run exactly as
the CLI runs it. jobs/ has entry points for ingest and export only; the cluster test runs the
other verbs through spark-submit too, so that every step meets the same cluster.

    spark-submit --master spark://... --packages ... featurelake_submit.py --conf C --repo R apply
"""
import sys

from featurelake.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
