# The two commands of the README: `make serve` and `make test`. Both create .venv first
# when it is missing (or older than pyproject.toml), so they work on a fresh machine.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: serve test lint bench bench-smtp bench-imap bench-pop3 bench-outbound bench-store clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

serve: $(BIN)/.installed
	$(BIN)/ledgermail serve

lint: $(BIN)/.installed
	$(BIN)/lint-imports
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -q

# Every comparison with a peer (Postfix, Dovecot; installed with apt-get if missing), one
# table; its last line is "targets met: N of M". As root. bench-* run one script each.
bench: $(BIN)/.installed
	$(BIN)/python bench/all.py

bench-smtp: $(BIN)/.installed
	$(BIN)/python bench/smtp.py

bench-imap: $(BIN)/.installed
	$(BIN)/python bench/imap.py

bench-pop3: $(BIN)/.installed
	$(BIN)/python bench/pop3.py

bench-outbound: $(BIN)/.installed
	$(BIN)/python bench/outbound.py

bench-store: $(BIN)/.installed
	$(BIN)/python bench/store.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
