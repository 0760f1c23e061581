# The two set-up commands of the README. Both install what they need (scripts/bootstrap.sh).
.PHONY: build test lint

build:
	bash scripts/bootstrap.sh
	.venv/bin/fastml build configs/jet_tagger.yaml

test:
	bash scripts/bootstrap.sh
	.venv/bin/ruff check fastml tests benchmarks
	.venv/bin/python -m pytest tests

lint:
	.venv/bin/ruff check fastml tests benchmarks
