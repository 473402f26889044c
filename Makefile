# The two commands the README promises: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8001
# Another name for the same address: pages open the socket there, so the site's cookies and
# origin do not reach it, as with API Gateway's two hosts on AWS.
SOCKET_HOST ?= localhost
# pytest-xdist workers (0: one process): most of the suite waits on real processes, sockets
# and browsers.
TEST_WORKERS ?= 2

.PHONY: install browser run test lint clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

# Chromium for the browser tests: Debian's (apt-get, as root or with sudo -n), else Playwright's
# download; when neither is possible it stops with what to run.
browser: install
	$(PY) -m tests.browsers

run: install
	AWS_GATEWAY_REGION_NAME=$${AWS_GATEWAY_REGION_NAME:-us-east-1} $(PY) manage.py migrate --noinput
	AWS_GATEWAY_REGION_NAME=$${AWS_GATEWAY_REGION_NAME:-us-east-1} $(PY) manage.py createdemo
	@echo "Open http://$(HOST):$(PORT)/ and log in as alice / alice (or bob / bob in a second browser)"
	@echo "Pages chat over ws://$(SOCKET_HOST):$(PORT)/local: another host, as on AWS"
	AWS_GATEWAY_REGION_NAME=$${AWS_GATEWAY_REGION_NAME:-us-east-1} $(PY) manage.py runapigateway --host $(HOST) --port $(PORT) --socket-host $(SOCKET_HOST)

test: install browser
	$(PY) -m coverage erase
	$(PY) -W error::DeprecationWarning -W error::PendingDeprecationWarning -m coverage run --parallel -m pytest --ds tests.settings -n $(TEST_WORKERS)
	$(PY) -m coverage combine --quiet
	$(PY) -m coverage report
	node --test tests/js/

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .coverage .coverage.* htmlcov
