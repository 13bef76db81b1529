# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test check bench install browser mailservers mailreaders clean distclean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

# Fill the SQLite database with the demo shop, then run the engine with the
# development mail sink (emails land in outbox/ as .eml files). Ctrl-C stops it.
demo: $(STAMP)
	$(BIN)/lifecycle demo
	$(BIN)/lifecycle run --demo

# Debian's chromium for the dashboard's browser tests. Installed when missing
# and we may (root with apt-get); otherwise those tests skip locally, with a
# message, and fail under CI=true. apt-get waits up to 5 minutes for another
# apt or dpkg to release its lock instead of failing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get -o DPkg::Lock::Timeout=300 update -qq \
	      && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq chromium >/dev/null) \
	      || echo "could not install chromium: browser tests will not run"; \
	  else echo "chromium is not installed: browser tests will skip (apt-get install chromium)"; fi; }

# Debian's dovecot for the tests that read a mailbox over IMAP, and Debian's postfix for
# those that need a real MTA's bounces; they start private instances of their own
# (tests/imap_server.py, tests/postfix_server.py), never the system's services. Postfix
# is preseeded "No configuration": the package then writes no main.cf, so no system
# mailer is set up and its service has nothing to start. Installed like chromium above;
# without them those tests skip locally and fail under CI=true.
mailservers:
	@missing=""; \
	test -x /usr/sbin/dovecot || command -v dovecot >/dev/null 2>&1 || missing=" dovecot-imapd"; \
	test -x /usr/sbin/postfix || command -v postfix >/dev/null 2>&1 || missing="$$missing postfix"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections \
	      && apt-get -o DPkg::Lock::Timeout=300 update -qq \
	      && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq $$missing >/dev/null) \
	      || echo "could not install$$missing: IMAP and Postfix tests will not run"; \
	  else echo "not installed:$$missing: IMAP and Postfix tests will skip (apt-get install$$missing)"; fi; \
	fi

# Debian's spamassassin, which scores every shipped email (tests/deliver/test_spamassassin.py),
# and GMime for the system's python3, which reads our headers as mu, notmuch, Evolution and
# Geary do (tests/deliver/test_headers.py). Installed like chromium above; without them
# those tests skip locally and fail under CI=true.
GMIME_PROBE := import gi; gi.require_version("GMime", "3.0")
mailreaders:
	@{ command -v spamassassin >/dev/null 2>&1 && /usr/bin/python3 -c '$(GMIME_PROBE)' >/dev/null 2>&1; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get -o DPkg::Lock::Timeout=300 update -qq \
	      && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
	        spamassassin gir1.2-gmime-3.0 python3-gi >/dev/null) \
	      || echo "could not install spamassassin and GMime: spam score and GMime tests will not run"; \
	  else echo "spamassassin or GMime is not installed: their tests will skip (apt-get install spamassassin gir1.2-gmime-3.0 python3-gi)"; fi; }

test: $(STAMP) browser mailservers mailreaders
	$(BIN)/python -m pytest -q

check: $(STAMP)
	$(BIN)/ruff check engine tests bench
	$(BIN)/ruff format --check engine tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/lifecycle check

bench: $(STAMP)
	$(BIN)/python bench/import_orders.py
	$(BIN)/python bench/plan.py
	$(BIN)/python bench/flows.py
	$(BIN)/python bench/coupons.py
	$(BIN)/python bench/tiers.py
	$(BIN)/python bench/send.py
	$(BIN)/python bench/track.py
	$(BIN)/python bench/events.py
	$(BIN)/python bench/bounces.py

# The demo's database, outbox and secret; `distclean` also drops the virtualenv.
clean:
	rm -rf outbox lifecycle.db lifecycle.db-wal lifecycle.db-shm lifecycle.db.lock .lifecycle-secret

distclean: clean
	rm -rf $(VENV)
