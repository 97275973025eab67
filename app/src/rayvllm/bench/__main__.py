"""`python -m rayvllm.bench ...`: the same as `rayvllm bench ...`."""

import argparse

from rayvllm.bench import add_arguments, run

parser = argparse.ArgumentParser(prog="python -m rayvllm.bench", description=__doc__)
add_arguments(parser)
raise SystemExit(run(parser.parse_args()))
