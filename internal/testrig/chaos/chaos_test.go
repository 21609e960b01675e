package chaos_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"decnet-attribution/internal/testrig/awstest"
	"decnet-attribution/internal/testrig/chaos"
	"decnet-attribution/internal/testrig/chaos/crash"
)

func TestMain(m *testing.M) { awstest.Main(m) }

func mustEnv(tb testing.TB) chaos.Env {
	tb.Helper()
	endpoint := os.Getenv("CHAOS_ENDPOINT") // a running moto, for experiments
	if endpoint == "" {
		endpoint = awstest.Moto(tb).Endpoint
	}
	env := chaos.Env{Endpoint: endpoint, Template: awstest.Template(tb), WorkDir: tb.TempDir()}
	if os.Getenv("CHAOS_PROGRESS") != "" {
		env.Progress = os.Stderr
	}
	return env
}

// TestScenarios runs the standard scenarios at their small sizes, all at
// once (they mostly wait on redeliveries), and fails each whose verdicts
// are violated or that did not exercise what it is about.
func TestScenarios(t *testing.T) {
	t.Parallel()
	env := mustEnv(t)
	env.RIE = awstest.RIE(t)
	env.CrashBootstrap = awstest.BuildBootstrap(t, "./internal/testrig/chaos/crashfn")
	if err := chaos.Warm(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	scenarios := chaos.Scenarios(false)
	reports := make([]*chaos.Report, len(scenarios))
	errs := make([]error, len(scenarios))
	var wg sync.WaitGroup
	for i, sc := range scenarios {
		wg.Go(func() { reports[i], errs[i] = chaos.Run(context.Background(), env, sc) })
	}
	wg.Wait()
	exercised := map[string]func(*chaos.Report) string{
		"sequential-clean": func(r *chaos.Report) string {
			if r.Deliveries.Redelivered != 0 || r.Metrics.Amendments == 0 || r.Metrics.Duplicates == 0 {
				return "want no redelivery, and some amendments and duplicates"
			}
			return ""
		},
		"sequential-faults": func(r *chaos.Report) string {
			if r.Deliveries.Redelivered == 0 || r.Metrics.SDKRetries == 0 || r.Metrics.PublishRetries == 0 || r.Events.DeadLetters == 0 {
				return "want redeliveries, SDK and publish retries, and dead letters by the redrive"
			}
			return ""
		},
		"sequential-crashes": func(r *chaos.Report) string {
			if r.Crashes == 0 || r.Metrics.Instances <= 1 {
				return "want crashes, and the instances that replaced the dead ones"
			}
			return everyCrashPoint(scenarioNamed(scenarios, r.Scenario), r)
		},
		"bus-outage": func(r *chaos.Report) string {
			if r.Outage == 0 || r.Metrics.PublishFailures == 0 || r.Deliveries.Redelivered == 0 {
				return "want publishes that gave up during the outage, and the redeliveries that made up for them"
			}
			return ""
		},
		"concurrent-hot": func(r *chaos.Report) string {
			if r.Metrics.VersionConflicts == 0 || r.Crashes == 0 {
				return "8 pollers on 3 hot attackers should conflict and crash"
			}
			return everyCrashPoint(scenarioNamed(scenarios, r.Scenario), r)
		},
		"emulator-crashes": func(r *chaos.Report) string {
			if r.Crashes == 0 || r.Exits != r.Crashes || r.Deliveries.BatchErrors < r.Crashes || r.Metrics.Instances != r.Crashes+1 {
				return "want crashes, each a process exit answered as a failed invocation, and a fresh process after each"
			}
			return everyCrashPoint(scenarioNamed(scenarios, r.Scenario), r)
		},
		"identities-concurrent": func(r *chaos.Report) string {
			if msg := identitiesExercised(r); msg != "" {
				return msg
			}
			if r.Metrics.VersionConflicts == 0 {
				return "want version conflicts between pollers"
			}
			return everyCrashPoint(scenarioNamed(scenarios, r.Scenario), r)
		},
		"identities-emulator": func(r *chaos.Report) string {
			if msg := identitiesExercised(r); msg != "" {
				return msg
			}
			if r.Crashes == 0 || r.Exits != r.Crashes {
				return "want crashes, each a process exit"
			}
			return everyCrashPoint(scenarioNamed(scenarios, r.Scenario), r)
		},
	}
	for i, sc := range scenarios {
		t.Run(sc.Name, func(t *testing.T) {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			var b strings.Builder
			reports[i].Write(&b)
			t.Log("\n" + b.String())
			if !reports[i].OK() {
				t.Error("verdicts violated")
			}
			if want := exercised[sc.Name]; want == nil {
				t.Errorf("no check of what scenario %s exercises", sc.Name)
			} else if msg := want(reports[i]); msg != "" {
				t.Error(msg)
			}
		})
	}
}

// everyCrashPoint asks that each crash point the scenario sets fired at
// least once: a point the function's work no longer passes through proves
// nothing.
func everyCrashPoint(sc chaos.Scenario, r *chaos.Report) string {
	for _, p := range crash.Points {
		if sc.Crash[p] > 0 && r.CrashesAt[p] == 0 {
			return "want crashes at every point, none at " + string(p)
		}
	}
	return ""
}

func scenarioNamed(scenarios []chaos.Scenario, name string) chaos.Scenario {
	for _, sc := range scenarios {
		if sc.Name == name {
			return sc
		}
	}
	return chaos.Scenario{}
}

// identitiesExercised asks that merges and unmerges were applied, that a
// chain of merges formed, and that identities were retired with a rekeyed
// event.
func identitiesExercised(r *chaos.Report) string {
	m := r.MembershipApplied
	if m.ByTopic["identity.merged"] == 0 || m.ByTopic["identity.unmerged"] == 0 || m.ByTopic["identity.formed"] == 0 ||
		m.LongestChain < 2 || r.Events.Rekeyed == 0 || r.Stream.IdentityRepeats == 0 {
		return fmt.Sprintf("want formed, merged and unmerged changes applied, a chain of merges, repeats and rekeyed events: %+v, %d repeats, %d rekeyed",
			m, r.Stream.IdentityRepeats, r.Events.Rekeyed)
	}
	return ""
}
