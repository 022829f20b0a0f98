# Every target depends on `setup`, so a newcomer's first command just works.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

STACK  ?= seed-lb
HOST   ?= 127.0.0.1
PORT   ?= 5000

.DEFAULT_GOAL := help
.PHONY: help setup lock test lint run test-local local-up local-status local-down \
        local-break local-fix test-faults \
        deploy-aws destroy-aws status plan deploy-localstack destroy-localstack \
        grade grade-class doctor bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-20s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv and install the pinned packages

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check --quiet -r requirements.lock
	touch $@

lock: setup ## re-pin requirements.lock from what .venv holds
	{ echo '# Every package, pinned: `make setup` installs exactly this. Regenerate with `make lock`.'; \
	  $(VENV)/bin/pip freeze --exclude pip; } > requirements.lock

lint: setup ## ruff over app/, infra/ and tests/
	$(VENV)/bin/ruff check app infra tests

test: setup lint ## lint, then the whole test suite
	$(PY) -m pytest

run: setup ## serve the app with the production server on HOST:PORT
	$(PY) -m app --host $(HOST) --port $(PORT)

test-local: setup ## the whole system on this machine: provision, grade, failover drill, tear down
	$(PY) -m infra local test

local-up: setup ## start the local testbed and leave it running
	$(PY) -m infra local up

local-status: setup ## what the local testbed runs
	$(PY) -m infra local status

local-down: setup ## stop the local testbed, also after a killed run
	$(PY) -m infra local down

local-break: setup ## make a seed FAQ mistake on the running testbed: make local-break FAULT=app-sg-closed (FAULT=--list)
	$(PY) -m infra local break $(FAULT) $(ARGS)

local-fix: setup ## undo it: make local-fix FAULT=app-sg-closed
	$(PY) -m infra local fix $(FAULT) $(ARGS)

test-faults: setup ## every fault drill on testbeds side by side: break, grade FAIL, doctor names it, fix, PASS
	$(PY) -m infra local faults $(ARGS)

deploy-aws: setup ## deploy the stack (AWS, or AWS_ENDPOINT_URL)
	$(PY) -m infra deploy --stack $(STACK) $(ARGS)

destroy-aws: setup ## delete everything the stack tagged
	$(PY) -m infra destroy --stack $(STACK) $(ARGS)

status: setup ## the stack's resources, target health and DNS name
	$(PY) -m infra status --stack $(STACK) $(ARGS)

plan: setup ## what deploy would create or change; changes nothing
	$(PY) -m infra plan --stack $(STACK) $(ARGS)

.PHONY: iam-policy
iam-policy: setup ## print the IAM policy that deploy, status, doctor and destroy need (docs/aws.md)
	@$(PY) -m infra policy $(ARGS)

deploy-localstack: setup ## deploy into LocalStack (docker compose -f docker-compose.localstack.yml up -d)
	$(PY) -m infra deploy --backend localstack --stack $(STACK) $(ARGS)

destroy-localstack: setup ## destroy the stack in LocalStack
	$(PY) -m infra destroy --backend localstack --stack $(STACK) $(ARGS)

grade: setup ## check a load balancer as the autograder would: make grade LB=<dns> [INSTANCES=ip1,ip2]
	@if [ -z "$(LB)" ]; then echo "usage: make grade LB=<load balancer DNS name> [INSTANCES=ip1,ip2]" >&2; exit 2; fi
	$(PY) -m infra grade "$(LB)" $(if $(INSTANCES),--instances "$(INSTANCES)") --stack $(STACK) $(ARGS)

grade-class: setup ## grade a class: make grade-class ROSTER=class.csv OUT=grades.csv [ARGS=--jobs 32]
	@if [ -z "$(ROSTER)" ] || [ -z "$(OUT)" ]; then echo "usage: make grade-class ROSTER=<roster.csv> OUT=<grades.csv>" >&2; exit 2; fi
	$(PY) -m infra grade --roster "$(ROSTER)" --out "$(OUT)" $(ARGS)

doctor: setup ## name what is misconfigured on the AWS side: make doctor [STACK=..] [LB=name-or-dns]
	$(PY) -m infra doctor $(if $(LB),--lb "$(LB)",--stack $(STACK)) $(ARGS)

bench: setup ## measure throughput, failover, bad input and provisioning; writes docs/benchmarks.md
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing wrk from Debian's packages"; \
	    apt-get install -y -q wrk >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; } \
	      || echo "could not install wrk: throughput will be skipped" >&2; \
	  else echo "wrk is not installed (apt-get install wrk, brew install wrk): throughput will be skipped" >&2; fi; }
	$(PY) -m infra bench $(ARGS)

clean: ## remove .venv and caches (not .state/)
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache
