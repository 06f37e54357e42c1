# Sanitize a checkpoint through files, with make's dependency tracking.
#
#   make -f recipes/sanitize.mk MODEL=path/to/checkpoint OUT=work METHOD=dfsu
#   make -f recipes/sanitize.mk MODEL=work/victim OUT=work RECORDS=work/victim/planted.jsonl gate
#
# Each step is one pii-unlearn subcommand; a step reruns only when its inputs change.
# RECORDS (optional) are the records the audit checks (e.g. a victim's planted.jsonl or
# a red-team set); without it the audit checks the pseudo-PII found by `invert`.

MODEL ?= $(error set MODEL=checkpoint directory or .gguf file)
OUT ?= sanitize-work
METHOD ?= dfsu
SEED ?= 0
PII_UNLEARN ?= pii-unlearn
RECIPES := $(dir $(lastword $(MAKEFILE_LIST)))
CONFIG ?= $(RECIPES)configs/$(METHOD).yaml
POLICY ?=
RECORDS ?= $(OUT)/pii.jsonl
FAIL_ON ?= --fail-on 'err>0' --fail-on 'ppl_increase_pct>2'
INVERT_ARGS ?=
UNLEARN_ARGS ?=
AUDIT_ARGS ?=

.PHONY: all gate clean
.DELETE_ON_ERROR:

all: $(OUT)/report/report.json

$(OUT)/probes.jsonl: | $(OUT)
	$(PII_UNLEARN) invert --model $(MODEL) --output $@ --seed $(SEED) $(INVERT_ARGS)

$(OUT)/pii.jsonl: $(OUT)/probes.jsonl
	$(PII_UNLEARN) detect --input $< --output $@ --tokenizer $(MODEL) --anonymize --fake --seed $(SEED)

$(OUT)/risk.jsonl: $(OUT)/pii.jsonl $(POLICY)
	$(PII_UNLEARN) risk-score --input $< --output $@ $(if $(POLICY),--policy $(POLICY))

$(OUT)/$(METHOD)/config.json: $(OUT)/risk.jsonl $(CONFIG)
	$(PII_UNLEARN) unlearn --model $(MODEL) --forget $< --method $(METHOD) --output $(OUT)/$(METHOD) \
		--config $(CONFIG) --seed $(SEED) $(UNLEARN_ARGS)

$(OUT)/report/report.json: $(OUT)/$(METHOD)/config.json $(RECORDS)
	rm -rf $(OUT)/report
	$(PII_UNLEARN) audit --model $(OUT)/$(METHOD) --baseline $(MODEL) --records $(RECORDS) \
		--output $(OUT)/report --seed $(SEED) $(AUDIT_ARGS)

# Fails (exit 1) when the sanitized model still leaks or lost too much utility.
gate: $(OUT)/$(METHOD)/config.json $(RECORDS)
	rm -rf $(OUT)/gate-report
	$(PII_UNLEARN) audit --model $(OUT)/$(METHOD) --baseline $(MODEL) --records $(RECORDS) \
		--output $(OUT)/gate-report --seed $(SEED) $(FAIL_ON) $(AUDIT_ARGS)

$(OUT):
	mkdir -p $@

clean:
	rm -rf $(OUT)
