# decnet-attribution — build, run locally, test, lint.
#
# Local runs need python3 with moto (python3 -m moto.server) and Go; the
# Lambda Runtime Interface Emulator is installed into .local/bin on demand.

SHELL := /bin/bash

# Pinned tools.
RIE_VERSION   := v0.0.0-20261030222936-bef5c4ba774d
RIE_MODULE    := github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie
CFN_LINT_VERSION := 1.51.0

LOCAL     := $(CURDIR)/.local
RIE       := $(LOCAL)/bin/aws-lambda-rie
RIE_STAMP := $(LOCAL)/bin/.aws-lambda-rie-$(RIE_VERSION)
BOOTSTRAP := $(LOCAL)/bootstrap
LOCALSTACK := go run ./internal/testrig/cmd/localstack

.PHONY: build build-AttributionFunction bootstrap-host tools run stack-up stack-down invoke test lint clean

build:
	go build ./...

# Called by `sam build` (Metadata: BuildMethod: makefile) with ARTIFACTS_DIR.
build-AttributionFunction:
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 go build -tags lambda.norpc -trimpath -ldflags="-s -w" \
		-o $(ARTIFACTS_DIR)/bootstrap ./functions/attribution

# The function built for this machine, for the Runtime Interface Emulator.
bootstrap-host:
	CGO_ENABLED=0 go build -tags lambda.norpc -o $(BOOTSTRAP) ./functions/attribution

tools: $(RIE_STAMP)

$(RIE_STAMP):
	GOBIN=$(LOCAL)/bin go install $(RIE_MODULE)@$(RIE_VERSION)
	rm -f $(LOCAL)/bin/.aws-lambda-rie-* && touch $@

# Whole local round trip: moto + template resources + function under the
# emulator, every events/*.json fixture invoked, then a DECNET-like
# publisher on a local bus through the bridge, the queue, the function and
# EventBridge out to the alerts and back onto the bus; states and alerts
# printed, everything stopped again.
run: tools
	$(LOCALSTACK) run

# The stack in the background, with the SQS event source mapping running:
# messages sent to the observation queue are processed. stack-down stops it.
stack-up: tools
	$(LOCALSTACK) up

stack-down:
	$(LOCALSTACK) down

# make invoke EVENT=events/some-event.json (needs `make stack-up`)
invoke:
	@test -n "$(EVENT)" || { echo "usage: make invoke EVENT=events/file.json" >&2; exit 2; }
	$(LOCALSTACK) invoke $(EVENT)

# The one test command (CI runs it): tools the tests need, vet, all tests.
test: tools
	go vet ./...
	go test -race -count=1 ./...

lint:
	@out=$$(gofmt -l .); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...
	@command -v cfn-lint >/dev/null || { echo "cfn-lint not found: pip install cfn-lint==$(CFN_LINT_VERSION)" >&2; exit 1; }
	@cfn-lint --version | grep -q " $(CFN_LINT_VERSION)$$" || \
		echo "note: cfn-lint $(CFN_LINT_VERSION) is the pinned version; found $$(cfn-lint --version)" >&2
	cfn-lint template.yaml

# ---- bench ------------------------------------------------------------------
# Cost per observation of the incremental and full-recompute designs against
# prior history (DynamoDB requests and units, EventBridge entries, handler
# CPU), bootstrap size and init under the emulator. Prints the tables and
# the targets; writes bench/results.json and bench/COST.md. A few minutes on
# two cores.
.PHONY: bench
bench: tools
	go run ./internal/testrig/cmd/bench -out bench

# ---- chaos ------------------------------------------------------------------
# Every chaos scenario at full size against a fresh moto (internal/testrig/chaos:
# redeliveries, 8 pollers on hot attackers, DECNET identity events mixed
# in, DynamoDB and EventBridge faults, crashes in process and under the
# emulator; one summary each, non-zero exit
# on any violated verdict), then short fuzz runs of decoding and the engine.
# Fuzz longer with FUZZTIME=30m make chaos, or one target at a time:
#   go test -run '^$$' -fuzz FuzzIncremental -fuzztime 1h ./internal/attribution/
FUZZTIME ?= 20s

.PHONY: chaos
chaos: tools
	go run ./internal/testrig/cmd/chaos
	go test -run '^$$' -fuzz '^FuzzDecodeMessage$$' -fuzztime $(FUZZTIME) ./internal/attribution/
	go test -run '^$$' -fuzz '^FuzzIncremental$$' -fuzztime $(FUZZTIME) ./internal/attribution/

clean:
	-$(LOCALSTACK) down
	rm -rf $(LOCAL)/bin $(LOCAL)/logs $(LOCAL)/run $(BOOTSTRAP) $(LOCAL)/stack.env $(LOCAL)/*.pid .aws-sam
