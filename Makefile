# calico-py: the two entry points a newcomer needs (as root, on Debian 12):
#   make demo   - start a throwaway etcd, apply examples/, show calicoctl output, stop etcd
#   make demo-l3 - a lab on an L3 fabric (racks behind ToRs, spines): a spine fails, a ToR restarts
#   make demo-vxlan - VXLAN CrossSubnet between two subnets joined by a plain router
#   make test   - lint, type-check and run every test tier
# Both install what they need (Debian packages if missing, a venv at .venv/) and are idempotent.

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp
OPENSTACK_STAMP := $(VENV)/.openstack-stamp

.PHONY: demo demo-l3 demo-vxlan test deps venv lint unit clean

deps:
	@./scripts/install-deps.sh

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "calico-py needs Python >= 3.11 ($(PYTHON))" >&2; exit 1; }
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q --upgrade pip
	@$(VENV)/bin/pip install -q -e '.[dev]'
	@touch $(STAMP)

# Real Neutron for the ML2 driver's tests; only `make test` needs it.
$(OPENSTACK_STAMP): $(STAMP)
	@$(VENV)/bin/pip install -q -e '.[dev,openstack]'
	@touch $(OPENSTACK_STAMP)

venv: deps $(STAMP)

lint: venv $(OPENSTACK_STAMP)
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts
	$(VENV)/bin/mypy src
	$(VENV)/bin/lint-imports

test: lint
	$(VENV)/bin/pytest

demo: venv
	$(VENV)/bin/python scripts/demo.py

demo-l3: venv
	$(VENV)/bin/python scripts/demo.py --l3

demo-vxlan: venv
	$(VENV)/bin/python scripts/demo.py --vxlan

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
