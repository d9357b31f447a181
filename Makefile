# The two commands of the README: `make demo` and `make test`.
# Both create .venv when it is missing and install torch==2.13.0 FIRST, so that no later
# requirement can pull another build, then the pinned requirements.
# TORCH_INDEX: PyTorch's own wheel index for torch, e.g. the CPU-only builds:
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
# Empty (the default): plain `pip install torch==2.13.0`, which on Linux from PyPI is the
# CUDA build (about 3 GB with its nvidia wheels).
TORCH_INDEX ?=
# wall-clock minutes of the demo's training
DEMO_MINUTES ?= 4
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO := demo-out

.PHONY: install install-dft demo test clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# GPAW (the gpaw oracle) from the pins marked `extra == "dft"` in requirements.txt; GPAW 26
# compiles its C sources as C++, hence CC=g++ (needs libxc-dev libopenblas-dev
# libfftw3-dev from apt). The venv's bin/ comes first so that GPAW is built with the MPI
# compiler of the venv's MPICH (the mpich pin), whose mpi.h the build sees anyway; no pip
# cache, so that a GPAW wheel built earlier against another MPI is never reused.
install-dft: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" CC=g++ $(PY) -m pip install --quiet --no-cache-dir \
		$$(sed -n 's/; *extra *== *"dft"//p' requirements.txt)

demo: $(STAMP)
	rm -rf $(DEMO)
	$(VENV)/bin/mlff train examples/ethanol/painn.yaml --set training.max_minutes=$(DEMO_MINUTES) --out $(DEMO)/train
	$(VENV)/bin/mlff evaluate $(DEMO)/train/model.mlff examples/ethanol/test_MD.xyz \
		--json $(DEMO)/evaluate/metrics.json --plots $(DEMO)/evaluate
	$(VENV)/bin/mlff md $(DEMO)/train/model.mlff examples/ethanol/test_MD.xyz --frame 0 \
		--steps 500 --timestep 0.5 --temperature 300 --ensemble nvt --out $(DEMO)/md
	$(VENV)/bin/mlff info $(DEMO)/train/model.mlff
	@echo "demo outputs in $(DEMO)/"

# the suite on several workers (files spread over them), then the load-sensitive tests
# (marked `serial`) alone; both parts always run, and either failing fails the target
TEST_WORKERS ?= $(shell n=$$(nproc); [ $$n -gt 4 ] && n=4; [ $$n -lt 2 ] && n=2; echo $$n)
test: $(STAMP)
	@status=0; \
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not serial" || status=$$?; \
	$(PY) -m pytest -q -m serial || status=$$?; \
	exit $$status

clean:
	rm -rf $(DEMO) .pytest_cache build src/*.egg-info
