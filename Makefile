# The two set-up commands of the README. Both install what they need (scripts/bootstrap.sh).
.PHONY: build test lint

build:
	bash scripts/bootstrap.sh
	.venv/bin/fastml build configs/jet_tagger.yaml

# Two pytest-xdist workers (the CI machine has 2 cores); tests sharing a session build run on one worker
# (xdist_group marks, tests/conftest.py), the slow ones first. `pytest tests` alone still runs serially.
PYTEST_XDIST = -n 2 --dist loadgroup --no-loadscope-reorder --durations=30

test:
	bash scripts/bootstrap.sh
	.venv/bin/ruff check fastml tests benchmarks
	.venv/bin/python -m pytest $(PYTEST_XDIST) tests

lint:
	.venv/bin/ruff check fastml tests benchmarks
