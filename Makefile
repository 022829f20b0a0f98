# Every target depends on a setup target, so a newcomer's first command just works. Each
# installs only the dependency groups (pyproject.toml) its job needs, from requirements.lock:
#   setup-runtime  deploy, plan, status, destroy, grade, doctor
#   setup          runtime + local: the testbed (make test-local, local-up, run)
#   setup-dev      + dev and bench: make test, make lint
#   setup-bench    + bench: make bench
# A new target names the one it needs: `my-target: setup ## what it does`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Installs what is missing, with uv (or pip where uv cannot run); silent when up to date.
INSTALL = @$(PYTHON) .ci/install.py --venv $(VENV)

STACK  ?= seed-lb
# The local-* targets' testbed is seed-lb-local unless STACK is given on the command line
# (`make local-down STACK=probe`), so that an exported STACK never aims it at an AWS stack.
LOCAL  := $(if $(filter command line,$(origin STACK)),--stack $(STACK))
HOST   ?= 127.0.0.1
PORT   ?= 5000
# make test: pytest-xdist workers, three per core: most of the long files wait (health-check
# windows, retry backoff) while another runs. On 2 cores, 6 took 142 s, 3 took 168 s and 8
# took 167 s (CPU-bound); 0: one process.
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(3 * (os.cpu_count() or 1))")

.DEFAULT_GOAL := help
.PHONY: help setup setup-runtime setup-dev setup-bench lock test lint run test-local \
        local-up local-status local-down local-break local-fix test-faults test-boot logs deploy-aws \
        destroy-aws status plan iam-policy deploy-localstack destroy-localstack grade \
        grade-class doctor bench clean setup-localstack localstack-up localstack-down \
        test-localstack

# make help (or make alone): the targets in groups, the student's path first.
help:
	@echo "usage: make TARGET [VAR=value ...]"
	@awk 'BEGIN {FS = ":.*## "} /^##@ / {printf "\n%s\n", substr($$0, 5)} /^[a-z-]+:.*## / {printf "  make %-20s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ The assignment

test-local: setup ## the whole system on this machine: provision, grade, failover drill, tear down
	$(PY) -m infra local test $(LOCAL) $(ARGS)

deploy-aws: setup-runtime ## deploy the stack (AWS, or AWS_ENDPOINT_URL)
	$(PY) -m infra deploy --stack $(STACK) $(ARGS)

grade: setup-runtime ## check a load balancer as the autograder would: make grade LB=<dns> [INSTANCES=ip1,ip2]
	@if [ -z "$(LB)" ]; then echo "usage: make grade LB=<load balancer DNS name> [INSTANCES=ip1,ip2]" >&2; exit 2; fi
	$(PY) -m infra grade "$(LB)" $(if $(INSTANCES),--instances "$(INSTANCES)") --stack $(STACK) $(ARGS)

doctor: setup-runtime ## name what is misconfigured on the AWS side: make doctor [STACK=..] [LB=name-or-dns]
	$(PY) -m infra doctor $(if $(LB),--lb "$(LB)",--stack $(STACK)) $(ARGS)

status: setup-runtime ## the stack's resources, target health and DNS name
	$(PY) -m infra status --stack $(STACK) $(ARGS)

destroy-aws: setup-runtime ## delete everything the stack tagged
	$(PY) -m infra destroy --stack $(STACK) $(ARGS)

logs: setup-runtime ## each instance's state and boot log (its console): the boot script's done or FAILED line first
	$(PY) -m infra logs --stack $(STACK) $(ARGS)

plan: setup-runtime ## what deploy would create or change; changes nothing
	$(PY) -m infra plan --stack $(STACK) $(ARGS)

iam-policy: setup-runtime ## print the IAM policy that deploy, status, doctor and destroy need (docs/aws.md)
	@$(PY) -m infra policy $(ARGS)

##@ Grading a class

grade-class: setup-runtime ## grade a class: make grade-class ROSTER=class.csv OUT=grades.csv [ARGS=--jobs 32]
	@if [ -z "$(ROSTER)" ] || [ -z "$(OUT)" ]; then echo "usage: make grade-class ROSTER=<roster.csv> OUT=<grades.csv>" >&2; exit 2; fi
	$(PY) -m infra grade --roster "$(ROSTER)" --out "$(OUT)" $(ARGS)

##@ The local testbed and its drills

local-up: setup ## start the local testbed and leave it running
	$(PY) -m infra local up $(LOCAL) $(ARGS)

local-status: setup ## what the local testbed runs
	$(PY) -m infra local status $(LOCAL) $(ARGS)

local-down: setup ## stop the local testbed, also after a killed run
	$(PY) -m infra local down $(LOCAL) $(ARGS)

local-break: setup ## make a seed FAQ mistake on the running testbed: make local-break FAULT=app-sg-closed (FAULT=--list)
	$(PY) -m infra local break $(FAULT) $(LOCAL) $(ARGS)

local-fix: setup ## undo it: make local-fix FAULT=app-sg-closed
	$(PY) -m infra local fix $(FAULT) $(LOCAL) $(ARGS)

test-faults: setup ## every fault drill on testbeds side by side: break, grade FAIL, doctor names it, fix, PASS
	$(PY) -m infra local faults $(LOCAL) $(ARGS)

# Root on Linux with systemd-nspawn, debootstrap and nftables (.ci/run installs them);
# elsewhere it says why in one line and passes, skipped. Then Ctrl-C at 2, 10 and 30 s.
test-boot: setup-dev ## the instances as booted machines: cloud-init runs the user data; grade, drill, Ctrl-C
	$(PY) -m infra local test-boot $(ARGS)
	SEEDLB_BOOT_TESTS=1 $(PY) -m pytest -q tests/local/test_boot_interrupts.py

run: setup ## serve the app with the production server on HOST:PORT
	$(PY) -m app --host $(HOST) --port $(PORT)

localstack-up: setup-localstack ## start LocalStack's free code on 127.0.0.1:4566, a plain process (no Docker)
	$(PY) -m infra localstack up $(ARGS)

localstack-down: setup-runtime ## stop it (SIGKILL after 10 s)
	$(PY) -m infra localstack down $(ARGS)

# LocalStack's conventions: any keys ("test"), us-east-1; the user's own AWS settings stay out.
LOCALSTACK_ENV = env -u AWS_PROFILE -u AWS_SESSION_TOKEN -u AWS_ENDPOINT_URL \
	AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1

deploy-localstack: setup-runtime ## deploy into LocalStack (make localstack-up, or docker compose -f docker-compose.localstack.yml up -d)
	$(LOCALSTACK_ENV) $(PY) -m infra deploy --backend localstack --stack $(STACK) $(ARGS)

destroy-localstack: setup-runtime ## destroy the stack in LocalStack
	$(LOCALSTACK_ENV) $(PY) -m infra destroy --backend localstack --stack $(STACK) $(ARGS)

##@ Development

test: setup-dev lint ## lint, then the whole test suite (in parallel: pytest-xdist)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test-localstack: setup-dev setup-localstack ## deploy, plan, status, doctor, destroy against LocalStack 4.13 itself (CI)
	SEEDLB_LOCALSTACK=1 $(PY) -m pytest -q tests/aws/test_localstack_real.py

lint: setup-dev ## ruff over app/, infra/, tests/ and .ci/
	$(VENV)/bin/ruff check app infra tests .ci

bench: setup-bench ## measure throughput, failover, bad input and provisioning; writes docs/benchmarks.md
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing wrk from Debian's packages"; \
	    apt-get install -y -q wrk >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; } \
	      || echo "could not install wrk: throughput will be skipped" >&2; \
	  else echo "wrk is not installed (apt-get install wrk, brew install wrk): throughput will be skipped" >&2; fi; }
	$(PY) -m infra bench $(ARGS)

lock: ## re-pin requirements.lock from pyproject.toml (keeps other pins; ARGS=--upgrade-package=X)
	@$(PYTHON) .ci/install.py --lock $(ARGS)

setup: ## create .venv with what make test-local needs (runtime and local groups)
	$(INSTALL) local

setup-runtime: ## only what deploy, status, destroy, grade and doctor need
	$(INSTALL) runtime

setup-dev: ## everything make test needs (runtime, local, dev, bench)
	$(INSTALL) local dev bench

setup-bench: ## what make bench needs (runtime, local, bench)
	$(INSTALL) local bench

setup-localstack: setup-runtime ## LocalStack's free code in .venv-localstack (its own lock: requirements-localstack.lock)
	@$(PYTHON) .ci/install.py --venv .venv-localstack localstack

clean: ## remove .venv, .venv-tools and caches (not .state/)
	rm -rf $(VENV) .venv-tools .pytest_cache .hypothesis .ruff_cache
